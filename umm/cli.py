"""``python -m umm list | chat | generate | edit | serve``: the command line over the same manager (or Ray)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from umm.errors import UmmError


def _parse_param(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m umm", description=__doc__)
    parser.add_argument("--demo", action="store_true", help="also offer tiny random-weight models (offline)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: best available)")
    parser.add_argument("--backend", choices=("local", "ray"), default=None,
                        help="run in this process (local, default) or on the Ray deployment (ray; also UMM_BACKEND)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("table", help="print the README's model table (markdown)")
    fetcher = sub.add_parser("fetch", help="download a model's pinned weights into the Hugging Face cache")
    fetcher.add_argument("models", nargs="+", metavar="MODEL")
    converter = sub.add_parser(
        "convert", help="turn a model's official pickle files into safetensors (torch.load weights_only=True)"
    )
    converter.add_argument("models", nargs="+", metavar="MODEL")
    checker = sub.add_parser(
        "check", help="inspect a downloaded snapshot without loading weights (exit 0 only when every row passes)"
    )
    checker.add_argument("models", nargs="+", metavar="MODEL")
    checker.add_argument("--path", help="a folder holding the snapshot (default: the pinned one in the HF cache)")
    lister = sub.add_parser("list", help="list catalog models")
    lister.add_argument("--capability", choices=["understand", "generate", "edit"])

    server = sub.add_parser(
        "serve", help="start the Ray Serve deployment (a local Ray cluster unless --address; requirements-ray.txt)"
    )
    server.add_argument("--replicas", type=int, default=None, help="replicas, one ModelManager each (ray.replicas)")
    server.add_argument("--models-per-replica", type=int, default=None, help="ray.models_per_replica")
    server.add_argument("--gpus-per-replica", type=float, default=None, help="default: 1 where the cluster has GPUs")
    server.add_argument("--cpus-per-replica", type=float, default=None)
    server.add_argument("--address", default=None, help="an existing Ray cluster (e.g. auto); default: start one")
    server.add_argument("--detach", action="store_true", help="return once deployed (only with --address)")

    def task(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--model", required=True)
        p.add_argument("--prompt", required=True)
        p.add_argument("--seed", type=int, default=None, help="omit for a random seed (printed)")
        p.add_argument("--param", "-p", action="append", default=[], type=_parse_param, metavar="NAME=VALUE")
        return p

    chat = task("chat", "ask about images")
    chat.add_argument("--image", action="append", default=[])
    gen = task("generate", "text to image")
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--out", default="outputs/umm.png", help="PNG path; several images get -1, -2, …")
    edit = task("edit", "edit an image by instruction")
    edit.add_argument("--image", action="append", required=True)
    edit.add_argument("--negative-prompt", default="")
    edit.add_argument("--out", default="outputs/umm-edit.png")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return _run(args)
    except UmmError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from umm.api import full_catalog
    from umm.catalog import load_app_config

    demo = args.demo or getattr(args, "model", "").startswith("tiny-") or any(
        m.startswith("tiny-") for m in getattr(args, "models", ()))
    catalog = full_catalog(demo)
    if args.command == "table":
        from umm.catalog import load_catalog, markdown_table

        print(markdown_table(load_catalog()))
        return 0
    if args.command == "fetch":
        from umm.hub import fetch

        for model_id in args.models:
            spec = catalog.get(model_id)
            repos = ", ".join(f"{part.repo}@{part.revision or 'main'}" for part in spec.parts())
            print(f"{spec.id}: {repos} (~{spec.weight_bytes / 1e9:.1f} GB) …")
            for path in fetch(spec):
                print(f"{spec.id}: {path}")
            if spec.convert:
                print(f"{spec.id}: ships pickle files; run `python -m umm convert {spec.id}` once to use them.")
            from umm.check import check_model

            print(check_model(spec).table())
        return 0
    if args.command == "check":
        from umm.check import check_model

        ok = True
        for model_id in args.models:
            report = check_model(catalog.get(model_id), args.path)
            print(report.table())
            ok = ok and report.ok
        return 0 if ok else 1
    if args.command == "convert":
        from umm.convert import convert_model

        for model_id in args.models:
            spec = catalog.get(model_id)
            if not spec.convert:
                print(f"{spec.id}: nothing to convert (its weights are safetensors already).")
            for path in convert_model(spec):
                print(f"{spec.id}: wrote {path}")
        return 0
    if args.command == "list":
        for spec in catalog:
            if args.capability is None or spec.can(args.capability):
                caps = ",".join(spec.capabilities)
                print(f"{spec.id:24} {caps:26} {spec.weight_bytes / 1e9:6.2f} GB  {spec.repo}")
        return 0

    if args.command == "serve":
        from umm.serve.ray_backend import serve_forever

        overrides = {"device": args.device} if args.device else {}
        return serve_forever(
            catalog, load_app_config(), replicas=args.replicas, models_per_replica=args.models_per_replica,
            gpus_per_replica=args.gpus_per_replica, cpus_per_replica=args.cpus_per_replica, address=args.address,
            detach=args.detach, **overrides,
        )

    from umm.images import save_png
    from umm.inputs import check_prompt, open_image
    from umm.serve.backend import make_backend
    from umm.types import EditRequest, GenerateRequest, Message, UnderstandRequest

    overrides = {"device": args.device} if args.device else {}
    manager = make_backend(catalog, load_app_config(), args.backend, **overrides)
    params = dict(args.param)
    prompt = check_prompt(args.prompt)
    if args.command == "chat":
        images = [open_image(path) for path in args.image]
        request = UnderstandRequest([Message("user", prompt, images)], params=params, seed=args.seed)
        for chunk in manager.understand(args.model, request):
            print(chunk, end="", flush=True)
        print()
        return 0
    if args.command == "generate":
        result = manager.generate(
            args.model, GenerateRequest(prompt, args.negative_prompt, params=params, seed=args.seed)
        )
    else:
        images = [open_image(path) for path in args.image]
        result = manager.edit(args.model, EditRequest(images, prompt, args.negative_prompt, params, args.seed))
    out = Path(args.out)
    for index, image in enumerate(result.images):
        path = out if len(result.images) == 1 else out.with_name(f"{out.stem}-{index + 1}{out.suffix}")
        save_png(image, path, result.info)
        print(f"wrote {path}")
    print(f"seed: {result.info.seed}")
    if result.info.text:  # what the model wrote on the way (e.g. a plan)
        print(f"text: {result.info.text}")
    return 0
