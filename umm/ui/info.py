"""What the UI says about models: picker labels, the info card, the catalog table."""

from __future__ import annotations

from umm.catalog import ModelSpec
from umm.manager import ModelManager

BYTES_PER_PARAM = {"float32": 4, "bfloat16": 2, "float16": 2}
DEMO_BADGE = "🎲 random weights"

# Families known to edit images, for the notice shown when the catalog has no editor.
KNOWN_EDITORS = {
    "omnigen2": ("OmniGen2", "OmniGen2/OmniGen2", "configs/models/omnigen2.yaml"),
}

STATUS_ICONS = {
    "resident": "🟢",
    "cached in RAM": "🟡",
    "on disk": "💾",
    "not downloaded": "☁️",
}


def choices(manager: ModelManager, capability: str) -> list[tuple[str, str]]:
    """(label, id) pairs of the models that can do ``capability``; demo models are marked."""
    return [(label(spec), spec.id) for spec in manager.catalog if spec.can(capability)]


def label(spec: ModelSpec) -> str:
    return f"{spec.name}" if not spec.demo or "random" in spec.name else f"{spec.name} ({DEMO_BADGE})"


def default_model(manager: ModelManager, capability: str) -> str | None:
    """The resident model when it can do the task, else the first capable one (demo models first when present,
    since on an offline demo they are the ones that run)."""
    ids = manager.catalog.ids(capability)
    resident = manager.resident_id
    if resident in ids:
        return resident
    demo = [i for i in ids if manager.catalog.get(i).demo]
    return (demo or ids or [None])[0]


def status_text(manager: ModelManager, model_id: str) -> str:
    status = manager.status(model_id)
    icon = STATUS_ICONS.get(status, "⛔" if status.startswith("unavailable") else "")
    return f"{icon} {status}".strip()


def parameters_text(spec: ModelSpec) -> str:
    count = spec.options.get("parameters")
    if count:
        return f"{float(count) / 1e9:.2g} B"
    estimate = spec.weight_bytes / BYTES_PER_PARAM.get(spec.dtype, 2)
    if estimate < 1e6:
        return f"≈{estimate / 1e3:.0f} K (from weight size)"
    return f"≈{estimate / 1e9:.1f} B (from weight size)"


def size_text(n_bytes: int) -> str:
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:.1f} GB"
    if n_bytes >= 1e6:
        return f"{n_bytes / 1e6:.1f} MB"
    return f"{n_bytes / 1e3:.0f} KB"


def card(manager: ModelManager, model_id: str | None) -> str:
    """Markdown info card of one model, status included (cheap: no network)."""
    if not model_id or model_id not in manager.catalog:
        return "*No model selected.*"
    spec = manager.catalog.get(model_id)
    links = " · ".join(f"[{name}]({url})" for name, url in spec.links.items())
    lines = [
        f"**{spec.name}** &nbsp; `{spec.id}` &nbsp; {status_text(manager, model_id)}",
        f"Parameters {parameters_text(spec)} · weights {size_text(spec.weight_bytes)} ({spec.dtype}) · "
        f"license: {spec.license}",
    ]
    if spec.demo:
        lines.insert(0, f"> {DEMO_BADGE}: a tiny checkpoint with the real architecture and random weights; "
                        "its outputs are noise, for trying the app offline.")
    if links:
        lines.append(links)
    return "\n\n".join(lines)


def table(manager: ModelManager) -> list[list[str]]:
    """Rows of the Models tab."""
    rows = []
    for spec in manager.catalog:
        rows.append([
            spec.id,
            spec.name + (f" ({DEMO_BADGE})" if spec.demo and "random" not in spec.name else ""),
            status_text(manager, spec.id),
            spec.family,
            ", ".join(spec.capabilities),
            parameters_text(spec),
            size_text(spec.weight_bytes),
            spec.license,
        ])
    return rows


TABLE_HEADERS = ["id", "name", "status", "family", "capabilities", "parameters", "weights", "license"]


def no_editor_notice(manager: ModelManager) -> str:
    """Markdown telling the user which models can edit and how to get them."""
    lines = ["**No model in this catalog can edit images yet.**", ""]
    for family, (name, repo, config) in KNOWN_EDITORS.items():
        lines.append(
            f"- **{name}** (family `{family}`) edits images by instruction. Add `{config}` to the catalog, "
            f"fetch the weights with `hf download {repo}` on a machine with hub access, then restart the app "
            "(or run `python app.py --demo` for its tiny random-weight twin once the adapter is installed)."
        )
    return "\n".join(lines)
