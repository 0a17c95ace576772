"""``python app.py [--demo] [--host H] [--port P] [--share] [--public] [--backend B]``: build, launch the app."""

from __future__ import annotations

import argparse
import logging
import os

from umm.api import DEMO_ENV, full_catalog
from umm.catalog import load_app_config
from umm.serve.backend import BACKEND_ENV, BACKENDS, make_backend

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__)
    parser.add_argument("--demo", action="store_true", help=f"add tiny random-weight models (also {DEMO_ENV}=1)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    parser.add_argument("--public", action="store_true", help="public mode: no load/unload (default on Spaces)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: best available)")
    parser.add_argument(
        "--backend", choices=BACKENDS, default=None,
        help=f"where models run: this process (local, default) or a Ray Serve deployment (ray; also {BACKEND_ENV})",
    )
    parser.add_argument("--mcp", action="store_true", help="also serve generate, edit and chat as MCP tools")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def is_public(args: argparse.Namespace, config: dict) -> bool:
    """Public on a Space (``SPACE_ID`` is set there), with --public, or with ``app.public: true``."""
    return bool(args.public or os.environ.get("SPACE_ID") or (config.get("app") or {}).get("public"))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from umm.ui.app import build_app, launch_kwargs

    config = load_app_config()
    app_config = config.get("app") or {}
    demo = args.demo or None  # None: full_catalog reads UMM_DEMO
    catalog = full_catalog(demo)
    manager = make_backend(catalog, config, args.backend, **({"device": args.device} if args.device else {}))
    max_upload = int(float(app_config.get("max_upload_bytes") or 20e6))
    app = build_app(
        manager, public=is_public(args, config), max_upload_bytes=max_upload,
        queue_size=int(app_config.get("queue_size") or 64), mcp=args.mcp,
    )
    app.launch(server_name=args.host, server_port=args.port, share=args.share, mcp_server=args.mcp,
               **launch_kwargs(max_upload))
