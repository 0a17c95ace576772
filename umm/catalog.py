"""The model catalog: one YAML file per model in ``configs/models``.

The catalog is the single source the UI, CLI and tests are built from, so it is validated strictly:
an unknown key, a default outside its range or an unknown adapter family is an error naming the file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from umm.errors import CapabilityError, CatalogError, InputError, UnknownModelError
from umm.registry import FAMILIES

CAPABILITIES = ("understand", "generate", "edit")
DTYPES = ("float32", "bfloat16", "float16")
PARAM_TYPES = ("int", "float", "bool", "choice", "str")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
MODELS_DIR = CONFIG_DIR / "models"
PROJECT_ROOT = CONFIG_DIR.parent


@dataclass(frozen=True)
class ParamSpec:
    """One user-tunable parameter of one capability, with its range and default."""

    name: str
    type: str
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    label: str = ""

    def validate(self, value: Any) -> Any:
        """Coerce ``value`` to this parameter's type or raise an ``InputError`` saying why."""
        what = self.label or self.name
        if value is None:
            return self.default
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            raise InputError(f"{what} must be true or false, got {value!r}.")
        if self.type == "str":
            return str(value)
        if self.type == "choice":
            if value not in self.choices:
                options = ", ".join(map(str, self.choices))
                raise InputError(f"{what} must be one of {options}; got {value!r}.")
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{what} must be a number, got {value!r}.") from None
        if not math.isfinite(number):
            raise InputError(f"{what} must be a finite number, got {value!r}.")
        if self.type == "int":
            if number != int(number):
                raise InputError(f"{what} must be a whole number, got {value!r}.")
            number = int(number)
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise InputError(f"{what} must be between {_fmt(self.min)} and {_fmt(self.max)}; got {_fmt(number)}.")
        return number


def _fmt(x: float | None) -> str:
    if x is None:
        return "∞"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class CapabilitySpec:
    """The parameter schema of one task a model can do."""

    name: str
    params: tuple[ParamSpec, ...] = ()
    max_images: int | None = None  # input images per request (edit) or per conversation (understand)
    ordered: tuple[tuple[str, str], ...] = ()  # (a, b) pairs whose values must satisfy a <= b

    def check_images(self, count: int) -> None:
        """Refuse a request with too many (or, for edits, no) input images before it is queued."""
        if self.name == "edit" and count < 1:
            raise InputError("Editing needs at least one input image.")
        if self.max_images is not None and count > self.max_images:
            raise InputError(f"This model takes at most {self.max_images} input image(s); got {count}.")

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def validate(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Fill defaults and check every value; unknown names are rejected, not ignored."""
        if params is not None and not isinstance(params, dict):
            raise InputError(f"params must be a mapping of parameter name to value, got {type(params).__name__}.")
        params = dict(params or {})
        known = {p.name for p in self.params}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InputError(
                f"Unknown parameter(s) for {self.name}: {', '.join(unknown)}. "
                f"Known: {', '.join(sorted(known)) or 'none'}."
            )
        values = {p.name: p.validate(params.get(p.name)) for p in self.params}
        labels = {p.name: p.label or p.name for p in self.params}
        for low, high in self.ordered:
            if values[low] > values[high]:
                raise InputError(f"{labels[low]} ({values[low]:g}) must not be greater than {labels[high]} "
                                 f"({values[high]:g}).")
        return values


@dataclass(frozen=True)
class Component:
    """Another hub repo a model reads (a VAE, a tokenizer), fetched at its own pinned revision."""

    repo: str
    revision: str | None = None
    allow: tuple[str, ...] = ()  # glob patterns ``umm fetch`` downloads; empty: the whole repo


@dataclass(frozen=True)
class PickleFile:
    """An official file shipped only as a pickle; ``umm convert`` turns it into safetensors beside it."""

    file: str  # path inside the repo
    component: str | None = None  # None: the main repo


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry. ``repo`` may also be a local directory (tiny test checkpoints, mirrors)."""

    id: str
    name: str
    family: str
    repo: str
    revision: str | None
    dtype: str
    capabilities: dict[str, CapabilitySpec]
    license: str
    weight_bytes: int
    links: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    demo: bool = False
    components: dict[str, Component] = field(default_factory=dict)
    convert: tuple[PickleFile, ...] = ()

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    def capability(self, capability: str) -> CapabilitySpec:
        try:
            return self.capabilities[capability]
        except KeyError:
            can = ", ".join(self.capabilities) or "nothing"
            raise CapabilityError(f"{self.name} cannot {capability}; it can: {can}.") from None

    @property
    def is_local(self) -> bool:
        return Path(self.repo).is_dir()

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    def part(self, component: str | None = None) -> ModelSpec:
        """The spec of one repo this model reads: itself (None) or a component, with that repo's pin.

        Hub checks, error messages and ``from_pretrained`` kwargs then work per repo unchanged.
        """
        if component is None:
            return self.replace(components={}, convert=()) if self.components else self
        try:
            comp = self.components[component]
        except KeyError:
            raise CatalogError(f"{self.id} has no component {component!r}; it has: {sorted(self.components)}") from None
        return self.replace(
            name=f"{self.name} ({component})", repo=comp.repo, revision=comp.revision, components={}, convert=()
        )

    def parts(self) -> list[ModelSpec]:
        """Every repo this model reads, the main one first."""
        return [self.part(None), *(self.part(name) for name in self.components)]


_SPEC_KEYS = {
    "id", "name", "family", "repo", "revision", "dtype", "capabilities", "license",
    "weight_bytes", "links", "options", "description", "components", "convert",
}
_PARAM_KEYS = {"type", "default", "help", "min", "max", "step", "choices", "label"}


def parse_spec(data: dict[str, Any], source: str = "<dict>") -> ModelSpec:
    """Build and validate a ``ModelSpec`` from a plain mapping (as read from YAML)."""

    def fail(msg: str) -> CatalogError:
        return CatalogError(f"{source}: {msg}")

    if not isinstance(data, dict):
        raise fail("expected a mapping at the top level")
    unknown = sorted(set(data) - _SPEC_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {unknown}; allowed: {sorted(_SPEC_KEYS)}")
    required = ("id", "name", "family", "repo", "dtype", "capabilities", "license", "weight_bytes")
    missing = [k for k in required if k not in data]
    if missing:
        raise fail(f"missing key(s) {missing}")
    if data["family"] not in FAMILIES:
        raise fail(f"unknown family {data['family']!r}; known: {sorted(FAMILIES)}")
    if data["dtype"] not in DTYPES:
        raise fail(f"dtype must be one of {DTYPES}, got {data['dtype']!r}")
    caps = data["capabilities"]
    if not isinstance(caps, dict) or not caps:
        raise fail("capabilities must be a non-empty mapping of capability -> {params: ...}")
    capabilities = {}
    for cap_name, cap in caps.items():
        if cap_name not in CAPABILITIES:
            raise fail(f"unknown capability {cap_name!r}; known: {CAPABILITIES}")
        cap = cap or {}
        allowed = {"params", "max_images", "ordered"}
        if set(cap) - allowed:
            raise fail(f"capability {cap_name}: unknown key(s) {sorted(set(cap) - allowed)}")
        max_images = cap.get("max_images")
        if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
            raise fail(f"capability {cap_name}: max_images must be a positive whole number")
        params = []
        for pname, p in (cap.get("params") or {}).items():
            params.append(_parse_param(pname, p, lambda m, c=cap_name, n=pname: fail(f"{c}.{n}: {m}")))
        names = {p.name for p in params}
        ordered = tuple(tuple(pair) for pair in cap.get("ordered") or ())
        if any(len(pair) != 2 or not set(pair) <= names for pair in ordered):
            raise fail(f"capability {cap_name}: ordered must list [low, high] pairs of its own parameter names")
        capabilities[cap_name] = CapabilitySpec(cap_name, tuple(params), max_images, ordered)
    components = {}
    for comp_name, comp in (data.get("components") or {}).items():
        if not isinstance(comp, dict) or "repo" not in comp or set(comp) - {"repo", "revision", "allow"}:
            raise fail(f"component {comp_name}: expected {{repo: ..., revision: ..., allow: [...]}}")
        allow = comp.get("allow") or ()
        if isinstance(allow, str) or not all(isinstance(a, str) for a in allow):
            raise fail(f"component {comp_name}: allow must be a list of file patterns")
        components[str(comp_name)] = Component(str(comp["repo"]), None if comp.get("revision") is None
                                               else str(comp["revision"]), tuple(allow))
    convert = []
    for item in data.get("convert") or ():
        item = {"file": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or "file" not in item or set(item) - {"file", "component"}:
            raise fail("convert: expected a list of file paths or {file: ..., component: ...}")
        if item.get("component") is not None and item["component"] not in components:
            raise fail(f"convert: unknown component {item['component']!r}")
        convert.append(PickleFile(str(item["file"]), item.get("component")))
    return ModelSpec(
        id=str(data["id"]),
        name=str(data["name"]),
        family=data["family"],
        repo=_resolve_repo(str(data["repo"])),
        revision=None if data.get("revision") is None else str(data["revision"]),
        dtype=data["dtype"],
        capabilities=capabilities,
        license=str(data["license"]),
        weight_bytes=int(float(data["weight_bytes"])),
        links=dict(data.get("links") or {}),
        options=dict(data.get("options") or {}),
        description=str(data.get("description", "")),
        components=components,
        convert=tuple(convert),
    )


def _resolve_repo(repo: str) -> str:
    """A folder of this project (``assets/...``) as an absolute path, so it loads from any cwd."""
    local = PROJECT_ROOT / repo
    return str(local) if not Path(repo).is_absolute() and local.is_dir() else repo


def _parse_param(name: str, p: dict[str, Any], fail) -> ParamSpec:
    if not isinstance(p, dict):
        raise fail("expected a mapping")
    unknown = sorted(set(p) - _PARAM_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {unknown}; allowed: {sorted(_PARAM_KEYS)}")
    if p.get("type") not in PARAM_TYPES:
        raise fail(f"type must be one of {PARAM_TYPES}, got {p.get('type')!r}")
    if "default" not in p:
        raise fail("missing default")
    spec = ParamSpec(
        name=name,
        type=p["type"],
        default=p["default"],
        help=str(p.get("help", "")),
        min=p.get("min"),
        max=p.get("max"),
        step=p.get("step"),
        choices=tuple(p.get("choices") or ()),
        label=str(p.get("label", "")),
    )
    if spec.type == "choice" and not spec.choices:
        raise fail("a choice parameter needs choices")
    if spec.min is not None and spec.max is not None and spec.min > spec.max:
        raise fail(f"min {spec.min} is greater than max {spec.max}")
    try:
        spec.validate(spec.default)
    except InputError as err:
        raise fail(f"default is invalid: {err}") from None
    return spec


class Catalog:
    """An ordered, id-keyed collection of model specs."""

    def __init__(self, specs: list[ModelSpec] | None = None) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs or []:
            self.add(spec)

    def add(self, spec: ModelSpec) -> None:
        if spec.id in self._specs:
            raise CatalogError(f"duplicate model id {spec.id!r}")
        self._specs[spec.id] = spec

    def get(self, model_id: str) -> ModelSpec:
        try:
            return self._specs[model_id]
        except (KeyError, TypeError):
            known = ", ".join(self._specs) or "none"
            raise UnknownModelError(f"Unknown model {model_id!r}. Available models: {known}.") from None

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._specs

    def __iter__(self):
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def ids(self, capability: str | None = None) -> list[str]:
        return [s.id for s in self if capability is None or s.can(capability)]


def load_catalog(directory: Path | str = MODELS_DIR) -> Catalog:
    """Read every ``*.yaml`` in ``directory`` (sorted, so order is stable)."""
    directory = Path(directory)
    specs = []
    for path in sorted(directory.glob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            try:
                data = yaml.safe_load(fh)
            except yaml.YAMLError as err:
                raise CatalogError(f"{path.name}: not valid YAML: {err}") from None
        spec = parse_spec(data, source=path.name)
        if spec.id != path.stem:
            raise CatalogError(f"{path.name}: id {spec.id!r} must match the file name")
        specs.append(spec)
    return Catalog(specs)


def load_app_config(path: Path | str = CONFIG_DIR / "app.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        return {}
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def markdown_table(catalog: Catalog) -> str:
    """The README's model table, generated from the catalog (a test keeps them in sync)."""
    rows = [
        "| id | model | understand | generate | edit | weights | license |",
        "|---|---|:-:|:-:|:-:|--:|---|",
    ]
    for spec in catalog:
        marks = ["✓" if spec.can(c) else "" for c in CAPABILITIES]
        link = spec.links.get("hub") or f"https://huggingface.co/{spec.repo}"
        rows.append(
            f"| `{spec.id}` | [{spec.name}]({link}) | {' | '.join(marks)} | "
            f"{_size(spec.weight_bytes)} | {spec.license} |"
        )
    return "\n".join(rows)


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"
