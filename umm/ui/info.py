"""What the UI says about models: picker labels, the info card, the catalog table."""

from __future__ import annotations

from umm.catalog import ModelSpec
from umm.manager import ModelManager

BYTES_PER_PARAM = {"float32": 4, "bfloat16": 2, "float16": 2}
DEMO_BADGE = "⚄ random weights"

# Families known to edit images, for the notice shown when the catalog has no editor.
KNOWN_EDITORS = {
    "omnigen2": ("OmniGen2", "OmniGen2/OmniGen2", "configs/models/omnigen2.yaml"),
}

STATUS_ICONS = {
    "resident": "●",
    "cached in RAM": "◐",
    "on disk": "▣",
    "not downloaded": "☁",
}


def choices(manager: ModelManager, capability: str) -> list[tuple[str, str]]:
    """(label, id) pairs of the models that can do ``capability``, runnable ones first; the rest are marked."""
    specs = sorted((s for s in manager.catalog if s.can(capability)), key=lambda s: _rank(manager, s))
    return [(label(spec, manager), spec.id) for spec in specs]


def label(spec: ModelSpec, manager: ModelManager | None = None) -> str:
    text = f"{spec.name}" if not spec.demo or "random" in spec.name else f"{spec.name} ({DEMO_BADGE})"
    if manager is not None and not runnable(manager, spec.id):
        text += f" · {status_text(manager, spec.id)}"
    return text


def runnable(manager: ModelManager, model_id: str) -> bool:
    """Whether the weights are here (resident, in RAM or on disk): selecting it will not fail for lack of them."""
    return manager.status(model_id) in ("resident", "cached in RAM", "on disk")


def _rank(manager: ModelManager, spec: ModelSpec) -> tuple[int, int]:
    """Downloaded hub models, then local trained ones, then random twins, then what is not here."""
    if not runnable(manager, spec.id):
        return (3, 0)
    return (2 if spec.demo else 1 if spec.is_local else 0, 0)


def default_model(manager: ModelManager, capability: str) -> str | None:
    """The resident model when it can do the task, else the best one that can run here (see ``_rank``)."""
    ids = manager.catalog.ids(capability)
    resident = manager.resident_id
    if resident in ids:
        return resident
    ranked = sorted(ids, key=lambda i: _rank(manager, manager.catalog.get(i)))
    return ranked[0] if ranked else None


def runnable_ids(manager: ModelManager, capability: str, n: int) -> list[str]:
    """Up to ``n`` models that can run ``capability`` here, best first (Compare's preselection)."""
    ids = [i for i in manager.catalog.ids(capability) if runnable(manager, i)]
    return sorted(ids, key=lambda i: _rank(manager, manager.catalog.get(i)))[:n]


def fetch_hint(spec: ModelSpec) -> str:
    """One line saying how to get a model that is not downloaded."""
    return f"{spec.name} is not downloaded here: run `python -m umm fetch {spec.id}` on a machine with hub access."


def first_run_banner(manager: ModelManager) -> str | None:
    """What to tell a user when no real model's weights are here (most people's first contact)."""
    real = [s for s in manager.catalog if not s.demo and not s.is_local]
    if any(runnable(manager, s.id) for s in real) or not real:
        return None
    local = [s for s in manager.catalog if s.is_local and not s.demo]
    lines = [f"**No model weights are downloaded yet** ({len(real)} models in the catalog, ☁ in the pickers)."]
    if local:
        names = ", ".join(f"**{s.name}**" for s in local)
        lines.append(f"Ready offline: {names} — {local[0].description}")
    lines.append("Get a real model with `python -m umm fetch <id>` (ids on the Models tab), or start with "
                 "`python app.py --demo` to add tiny random-weight twins of every family.")
    return " ".join(lines)


def status_text(manager: ModelManager, model_id: str) -> str:
    status = manager.status(model_id)
    icon = STATUS_ICONS.get(status, "✖" if status.startswith("unavailable") else "")
    return f"{icon} {status}".strip()


def parameters_text(spec: ModelSpec) -> str:
    count = spec.options.get("parameters")
    if count:
        return f"{float(count) / 1e9:.2g} B"
    estimate = spec.weight_bytes / BYTES_PER_PARAM.get(spec.dtype, 2)
    if estimate < 1e6:
        return f"≈{estimate / 1e3:.0f} K (from weight size)"
    if estimate < 1e9:
        return f"≈{estimate / 1e6:.1f} M (from weight size)"
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
        *([f"> {fetch_hint(spec)}"] if manager.status(model_id) == "not downloaded" else []),
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
            check_text(manager, spec),
        ])
    return rows


TABLE_HEADERS = ["id", "name", "status", "family", "capabilities", "parameters", "weights", "license", "check"]


def check_text(manager: ModelManager, spec: ModelSpec) -> str:
    """``umm check``'s verdict on a downloaded snapshot (files, configs, tensor headers; no weights read)."""
    if not runnable(manager, spec.id):
        return "—"
    from umm.check import check_model

    try:
        verdict = check_model(spec, memory=False, meta=False).verdict
    except Exception as err:  # a check must never break the page
        return f"✗ check failed: {type(err).__name__}: {err}"
    return verdict.replace(f" {spec.id}:", "", 1)


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
