"""``python -m umm check <id>``: does a downloaded snapshot hold what the adapter will read?

A 15-70 GB download that fails on first load (a renamed config key, a missing tokenizer file, a
pickle, a reshaped tensor) costs an hour. This check reads only files and safetensors *headers*
(``safetensors.safe_open``, no tensor data) and compares them with what the adapter expects:

- its modules built on the meta device from the snapshot's own configs (``Adapter.expected_tensors``),
- and, for catalog entries, the committed snapshot manifest ``configs/manifests/<id>.json`` (tensor
  names/shapes of the official checkpoint at full size, derived from the upstream module).

Paths inside a model are written as in its tiny twin: ``"transformer/config.json"`` is in the main
repo, ``"@vae/config.json"`` in the catalog component ``vae``. A tensor *group* is a folder (every
``*.safetensors`` directly in it, shards merged) or one ``.safetensors`` file (or its shards).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from umm.catalog import CONFIG_DIR, ModelSpec

log = logging.getLogger(__name__)

MANIFEST_DIR = CONFIG_DIR / "manifests"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl"}
PEAK_FACTOR = 1.2  # default-settings peak over weight bytes when the catalog states none (activations, caches)
DISK_TOLERANCE = 0.9  # fewer bytes than this share of the catalog's weight_bytes: an incomplete download

Folders = dict[str | None, Path | None]
NamesShapes = dict[str, list[int]]


@dataclass(frozen=True)
class Row:
    name: str
    ok: bool
    detail: str


@dataclass
class CheckReport:
    model_id: str
    rows: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    def row(self, name: str) -> Row:
        return next(row for row in self.rows if row.name == name)

    def failed(self) -> list[Row]:
        return [row for row in self.rows if not row.ok]

    @property
    def verdict(self) -> str:
        """One line for the Models tab."""
        bad = self.failed()
        if not bad:
            return f"✓ {self.model_id}: snapshot complete ({len(self.rows)} checks passed)"
        first = bad[0]
        more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        return f"✗ {self.model_id}: {first.name}: {first.detail}{more}"

    def table(self) -> str:
        width = max((len(row.name) for row in self.rows), default=4)
        lines = [f"{'ok' if row.ok else 'FAIL':4}  {row.name:{width}}  {row.detail}" for row in self.rows]
        return "\n".join([*lines, self.verdict])


# -- manifests ---------------------------------------------------------------------------------
def manifest_path(model_id: str) -> Path:
    return MANIFEST_DIR / f"{model_id}.json"


def load_manifest(model_id: str) -> dict[str, Any] | None:
    path = manifest_path(model_id)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# -- locating files ----------------------------------------------------------------------------
def snapshot_folders(spec: ModelSpec, path: Path | str | None = None) -> Folders:
    """The local folder of every repo the model reads: ``path`` (twin layout) or the pinned cache snapshots."""
    from umm.hub import snapshot_dir

    if path is not None:
        root = Path(path)
        folders: Folders = {None: root if root.is_dir() else None}
        for name in spec.components:
            sub = root / name
            folders[name] = sub if sub.is_dir() else snapshot_dir(spec.part(name))
        return folders
    return {None: snapshot_dir(spec.part()), **{name: snapshot_dir(spec.part(name)) for name in spec.components}}


def resolve(folders: Folders, relative: str) -> Path | None:
    """A twin-layout path (``"@vae/config.json"``, ``"transformer"``) inside the located folders."""
    component, rest = None, relative
    if relative.startswith("@"):
        component, _, rest = relative[1:].partition("/")
    base = folders.get(component)
    if base is None:
        return None
    return base / rest if rest else base


def group_files(folders: Folders, group: str) -> list[Path]:
    """The safetensors files of a tensor group (a folder, or one file and its shards)."""
    path = resolve(folders, group)
    if path is None:
        return []
    if group.endswith(".safetensors"):
        if path.is_file():
            return [path]
        index = path.with_name(path.name + ".index.json")
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [path.with_name(shard) for shard in shards]
        return []
    return sorted(path.glob("*.safetensors")) if path.is_dir() else []


def read_headers(files: list[Path]) -> dict[str, tuple[list[int], str]]:
    """Tensor name -> (shape, dtype) from safetensors headers only; no tensor data is read."""
    from safetensors import safe_open

    out: dict[str, tuple[list[int], str]] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                piece = handle.get_slice(name)
                out[name] = (list(piece.get_shape()), piece.get_dtype())
    return out


# -- what the adapter expects ------------------------------------------------------------------
def meta_tensors(target: str, folder: Path) -> NamesShapes:
    """Names/shapes of ``module:Class`` built on the meta device from the config in ``folder``, as saved.

    transformers classes: the checkpoint naming (tied weights dropped, the class's load-time key
    renaming reverted, exactly as ``save_pretrained`` writes). Others (diffusers, ports): ``from_config``.
    """
    import transformers
    from accelerate import init_empty_weights

    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    with init_empty_weights():
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            model = cls(transformers.AutoConfig.from_pretrained(str(folder)))  # configs only, no weights
        else:
            model = cls.from_config(cls.load_config(str(folder)))
    return names_shapes(model)


def names_shapes(model: Any) -> NamesShapes:
    state = model.state_dict()
    if hasattr(model, "get_expanded_tied_weights_keys"):
        from transformers.core_model_loading import revert_weight_conversion

        tied = model.get_expanded_tied_weights_keys(all_submodels=True)
        state = revert_weight_conversion(model, {k: v for k, v in state.items() if k not in tied})
    return {k: list(v.shape) for k, v in state.items()}


def expected_files(cls: type, manifest: dict[str, Any] | None) -> list[str]:
    files: list[str] = [*cls.checkpoint_files]
    for group in cls.checkpoint_groups():
        if not group.endswith(".safetensors"):
            files.append(f"{group}/config.json" if group else "config.json")
    files.extend((manifest or {}).get("files", []))
    return list(dict.fromkeys(files))


# -- the check ---------------------------------------------------------------------------------
def check_model(spec: ModelSpec, path: Path | str | None = None, *, memory: bool = True,
                meta: bool = True) -> CheckReport:
    """Inspect a snapshot (``path``, else the pinned one in the HF cache) without loading weights.

    ``meta=False`` skips building the adapter's modules on meta (a second or more at full size) and
    compares the headers with the manifest only: cheap enough for a page that lists every model.
    """
    from umm.registry import adapter_class

    cls = adapter_class(spec.family)
    manifest = load_manifest(spec.id)
    report = CheckReport(spec.id)
    folders = snapshot_folders(spec, path)
    missing_repos = [f"{spec.part(name).repo}" for name, folder in folders.items() if folder is None]
    if missing_repos:
        report.rows.append(Row("snapshot", False, f"not downloaded: {', '.join(missing_repos)}; "
                                                  f"`python -m umm fetch {spec.id}`"))
        return report
    report.rows.append(Row("snapshot", True, ", ".join(str(folders[n]) for n in folders)
                           + (f"; manifest {manifest_path(spec.id).name}" if manifest else "")))
    report.rows.append(_files_row(folders, expected_files(cls, manifest)))
    report.rows.append(_configs_row(folders, expected_files(cls, manifest)))
    report.rows.extend(_tensor_rows(spec, cls, folders, manifest, meta))
    report.rows.extend(_pickle_rows(spec, folders))
    report.rows.extend(_tokenizer_rows(folders, cls.special_tokens))
    report.rows.append(_disk_row(spec, folders))
    if memory:
        report.rows.append(_memory_row(spec))
    return report


def _files_row(folders: Folders, files: list[str]) -> Row:
    missing = [f for f in files if (p := resolve(folders, f)) is None or not p.exists()]
    if missing:
        return Row("files", False, f"missing {len(missing)} of {len(files)}: {', '.join(missing)}")
    return Row("files", True, f"{len(files)} files the adapter reads are present")


def _configs_row(folders: Folders, files: list[str]) -> Row:
    bad, count = [], 0
    for relative in files:
        path = resolve(folders, relative)
        if path is None or path.suffix != ".json" or not path.is_file():
            continue
        count += 1
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            bad.append(f"{relative} ({str(err).splitlines()[0]})")
    if bad:
        return Row("configs", False, f"unparsable: {'; '.join(bad)}")
    return Row("configs", True, f"{count} JSON files parse")


def _tensor_rows(spec: ModelSpec, cls: type, folders: Folders, manifest: dict[str, Any] | None,
                 meta: bool = True) -> Iterator[Row]:
    references: dict[str, list[tuple[str, NamesShapes, set[str]]]] = {}
    for group in cls.checkpoint_groups():
        references.setdefault(group, [])
    try:
        for group, expected in (cls.expected_tensors(folders) if meta else {}).items():
            references.setdefault(group, []).append(("model on meta", expected, set()))
    except Exception as err:  # a config that does not build the adapter's classes
        yield Row("model", False, f"the configs do not build the adapter's modules: {type(err).__name__}: "
                                  f"{str(err).splitlines()[0] if str(err) else ''}")
    optional = (manifest or {}).get("optional") or {}
    for group, expected in ((manifest or {}).get("tensors") or {}).items():
        references.setdefault(group, []).append(("manifest", expected, set(optional.get(group, ()))))
    if not references:
        references[""] = []
    for group, refs in references.items():
        yield _tensor_row(spec, folders, group, refs, cls.checkpoint_ignored)


def _tensor_row(spec: ModelSpec, folders: Folders, group: str, refs: list[tuple[str, NamesShapes, set[str]]],
                ignored: tuple = ()) -> Row:
    name = f"tensors {group or '.'}"
    files = group_files(folders, group)
    if not files:
        where = resolve(folders, group)
        pickles = [] if where is None else _pickles_near(where)
        if pickles:
            listed = {item.file for item in spec.convert}
            fix = (f"run `python -m umm convert {spec.id}` once" if any(p.name in " ".join(listed) for p in pickles)
                   else "umm loads safetensors only; this file is not supported")
            return Row(name, False, f"only pickle weights ({', '.join(p.name for p in pickles)}): {fix}")
        return Row(name, False, "no safetensors weights found")
    try:
        found = read_headers(files)
    except Exception as err:  # truncated download, not a safetensors file
        return Row(name, False, f"unreadable safetensors header: {type(err).__name__}: {err}")
    problems = []
    for label, expected, optional in refs:
        missing = sorted(set(expected) - set(found) - optional)
        unexpected = sorted(k for k in set(found) - set(expected) if not any(p.search(k) for p in ignored))
        shapes = [f"{k} {found[k][0]} ≠ {expected[k]}" for k in sorted(set(expected) & set(found))
                  if list(found[k][0]) != list(expected[k])]
        for what, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if items:
                problems.append(f"{label}: {len(items)} {what}: {_few(items)}")
    dtypes = sorted({dtype for _, dtype in found.values()})
    if problems:
        return Row(name, False, "; ".join(problems))
    against = " and ".join(label for label, _, _ in refs) or "no reference (headers only)"
    return Row(name, True, f"{len(found)} tensors in {len(files)} file(s) ({', '.join(dtypes)}) match {against}")


def _pickles_near(where: Path) -> list[Path]:
    folder = where if where.is_dir() else where.parent
    return sorted(p for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)


def _pickle_rows(spec: ModelSpec, folders: Folders) -> Iterator[Row]:
    from umm.convert import converted_path

    for item in spec.convert:
        base = folders.get(item.component)
        source = None if base is None else base / item.file
        label = f"convert {item.file}"
        if source is not None and converted_path(source).is_file():
            yield Row(label, True, f"converted to {converted_path(source).name}")
        elif source is not None and source.is_file():
            yield Row(label, False, f"shipped as a pickle; run `python -m umm convert {spec.id}` once")
        else:
            yield Row(label, False, f"{item.file} not downloaded; `python -m umm fetch {spec.id}`")


def _tokenizer_rows(folders: Folders, special_tokens: dict[str, tuple[str, ...]]) -> Iterator[Row]:
    for relative, tokens in special_tokens.items():
        name = f"tokenizer {relative or '.'}"
        folder = resolve(folders, relative)
        if folder is None or not folder.is_dir():
            yield Row(name, False, "folder missing")
            continue
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as err:
            yield Row(name, False, f"does not load: {type(err).__name__}: {str(err).splitlines()[0]}")
            continue
        vocab = tokenizer.get_vocab()
        absent = [t for t in tokens if t not in vocab]
        if absent:
            yield Row(name, False, f"lacks special token(s) {', '.join(absent)}")
            continue
        yield Row(name, True, f"{len(tokens)} special tokens present; {_template(tokenizer)}")


def _template(tokenizer: Any) -> str:
    if not getattr(tokenizer, "chat_template", None):
        return "no chat template (the adapter's own prompt format is used)"
    for content in ([{"type": "text", "text": "hi"}], "hi"):
        try:
            text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                 add_generation_prompt=True)
            if "hi" in text:
                return "chat template renders"
        except Exception:
            continue
    return "chat template present (the adapter renders its own format)"


def _disk_row(spec: ModelSpec, folders: Folders) -> Row:
    total = sum(p.stat().st_size for folder in {f for f in folders.values() if f is not None}
                for p in folder.rglob("*.safetensors"))
    detail = f"{_gb(total)} of safetensors on disk; catalog says {_gb(spec.weight_bytes)}"
    return Row("disk", total >= DISK_TOLERANCE * spec.weight_bytes, detail)


def _memory_row(spec: ModelSpec) -> Row:
    import torch

    from umm.devices import pick_device

    peak = int(spec.options.get("peak_bytes") or PEAK_FACTOR * spec.weight_bytes)
    device = pick_device()
    if device.type != "cuda":
        return Row("memory", True, f"~{_gb(peak)} peak estimated; no CUDA accelerator here ({device.type})")
    free, total = torch.cuda.mem_get_info(device)
    if peak <= free:
        return Row("memory", True, f"~{_gb(peak)} peak estimated; {_gb(free)} of {_gb(total)} free")
    offload = "cpu_offload" in spec.options
    hint = "enable options.cpu_offload" if offload else "free the accelerator or pick a smaller model"
    return Row("memory", offload, f"~{_gb(peak)} peak estimated > {_gb(free)} free: {hint}")


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _few(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f", … (+{len(items) - n})" if len(items) > n else "")
