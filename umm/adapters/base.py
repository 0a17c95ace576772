"""The adapter contract every model family implements.

An adapter turns typed requests into typed results for one catalog entry. It owns its torch modules
and nothing else: residency, locking and swapping belong to the manager. A capability is implemented
by overriding its method; the contract tests check that overrides and catalog capabilities agree.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch

from umm.catalog import ModelSpec
from umm.control import RunControl
from umm.errors import ModelLoadError, OutOfMemoryError
from umm.hub import missing_weights_error, weights_present
from umm.types import EditRequest, GenerateRequest, ImageResult, Message, RunInfo, UnderstandRequest

log = logging.getLogger(__name__)

CAPABILITY_METHODS = {"understand": "understand", "generate": "generate", "edit": "edit"}


class Adapter:
    """Base class; subclasses set ``family`` and implement ``load`` plus their capabilities."""

    family: ClassVar[str] = ""
    # What ``umm check`` expects of a snapshot (paths as in the tiny twin; "@name/..." is a component):
    checkpoint_modules: ClassVar[dict[str, str]] = {}  # tensor group -> "module:Class" built from its config
    checkpoint_files: ClassVar[tuple[str, ...]] = ()  # other files the loader reads
    special_tokens: ClassVar[dict[str, tuple[str, ...]]] = {}  # tokenizer folder -> tokens the adapter uses
    checkpoint_ignored: ClassVar[tuple[re.Pattern, ...]] = ()  # tensor names the loader drops on purpose

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.device: torch.device | None = None
        self.dtype: torch.dtype | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        raise NotImplementedError

    def modules(self) -> list[torch.nn.Module]:
        """Every torch module holding weights, so the manager can move, measure and drop them."""
        raise NotImplementedError

    def unload(self) -> None:
        """Drop every reference to weights; the manager then collects and empties caches."""
        for name, value in list(vars(self).items()):
            if isinstance(value, torch.nn.Module) or name in self._owned_attrs():
                setattr(self, name, None)
        self.device = None

    def _owned_attrs(self) -> tuple[str, ...]:
        """Non-module attributes (processors, pipelines) that also hold weights or buffers."""
        return ()

    def to(self, device: torch.device) -> None:
        """Move loaded weights between the accelerator and the host-RAM cache; no reload from disk.

        The first move to the host makes a (pinned, when CUDA is present) host copy of every tensor;
        later evictions just point the tensors back at that copy, so eviction copies nothing and a
        swap back is one host-to-device copy per tensor. Weights are frozen, so the copy stays valid.
        """
        device = torch.device(device)
        for module in self.modules():
            move_weights(module, device)
        self.device = device

    def weight_bytes(self) -> int:
        seen: set[int] = set()
        total = 0
        for module in self.modules():
            for tensor in [*module.parameters(), *module.buffers()]:
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
        return total

    # -- capabilities ----------------------------------------------------------------------
    def understand(self, request: UnderstandRequest, control: RunControl) -> Iterator[str]:
        raise NotImplementedError

    def generate(self, request: GenerateRequest, control: RunControl) -> ImageResult:
        raise NotImplementedError

    def edit(self, request: EditRequest, control: RunControl) -> ImageResult:
        raise NotImplementedError

    @classmethod
    def implements(cls, capability: str) -> bool:
        """True when the subclass overrides the capability's method (a contract, not dispatch)."""
        method = CAPABILITY_METHODS[capability]
        return getattr(cls, method) is not getattr(Adapter, method)

    # -- tiny checkpoints ------------------------------------------------------------------
    @classmethod
    def build_tiny(cls, directory: Path, spec: ModelSpec) -> None:
        """Write a tiny random checkpoint of the real architecture, laid out like the hub repo."""
        raise NotImplementedError

    # -- snapshot checks (umm check) -------------------------------------------------------
    @classmethod
    def checkpoint_groups(cls) -> dict[str, str]:
        return dict(cls.checkpoint_modules)

    @classmethod
    def expected_tensors(cls, folders: dict[str | None, Path | None]) -> dict[str, dict[str, list[int]]]:
        """Tensor names/shapes per group of the modules the adapter builds, on meta, from the snapshot's configs."""
        from umm.check import meta_tensors, resolve

        return {group: meta_tensors(target, resolve(folders, group))
                for group, target in cls.checkpoint_groups().items() if target}

    # -- helpers shared by adapters --------------------------------------------------------
    def pretrained_kwargs(self, component: str | None = None) -> dict[str, Any]:
        """Arguments every ``from_pretrained`` call gets: pinned revision, safetensors only."""
        return {"use_safetensors": True, **self.source_kwargs(component)}

    def source_kwargs(self, component: str | None = None) -> dict[str, Any]:
        """Revision and offline flag for any ``from_pretrained`` (processors included).

        ``component`` names another repo the catalog entry lists under ``components`` (a VAE, a
        tokenizer); None is the main repo. Pass ``self.repo(component)`` as the path.
        """
        part = self.spec.part(component)
        if part.is_local:
            return {}
        kwargs: dict[str, Any] = {"revision": part.revision} if part.revision else {}
        if weights_present(part):
            kwargs["local_files_only"] = True  # no network round-trips for a cached snapshot
        return kwargs

    def repo(self, component: str | None = None) -> str:
        """The repo id (or local folder) of the main repo or of a catalog component."""
        return self.spec.part(component).repo

    def snapshot_dir(self, component: str | None = None, allow_patterns: list[str] | None = None) -> Path:
        """A local folder with the repo's files at its pin, for loaders that read files directly."""
        part = self.spec.part(component)
        if part.is_local:
            return Path(part.repo)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(part.repo, allow_patterns=allow_patterns, **self.source_kwargs(component)))

    def converted(self, file: str, component: str | None = None) -> Path:
        """The safetensors copy ``umm convert`` made of an official pickle (never the pickle itself)."""
        from umm.convert import require_converted

        return require_converted(self.spec, self.snapshot_dir(component, [file, "*.safetensors"]), file)

    def generator(self, seed: int) -> torch.Generator:
        device = self.device if self.device is not None and self.device.type != "mps" else torch.device("cpu")
        return torch.Generator(device=device).manual_seed(seed)

    def run_info(self, task: str, seed: int, params: dict[str, Any], **extra: Any) -> RunInfo:
        return RunInfo(
            model_id=self.spec.id, revision=self.spec.revision, task=task, seed=seed, params=params, **extra
        )


class TransformersAdapter(Adapter):
    """One transformers model plus its processor at the repo root, the common case for native classes."""

    model_class: ClassVar[str] = ""  # a transformers class name, imported at load time
    processor_class: ClassVar[str] = ""
    system_prompt: ClassVar[str | None] = None  # prepended as a system turn in chats
    checkpoint_files = ("config.json", "tokenizer_config.json")

    @classmethod
    def checkpoint_groups(cls) -> dict[str, str]:
        return dict(cls.checkpoint_modules) or {"": f"transformers:{cls.model_class}"}

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.model: Any = None
        self.processor: Any = None

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        import transformers

        with load_errors(self.spec):
            processor_cls = getattr(transformers, self.processor_class)
            model_cls = getattr(transformers, self.model_class)
            self.processor = processor_cls.from_pretrained(self.spec.repo, **self.source_kwargs())
            self.model = model_cls.from_pretrained(
                self.spec.repo, dtype=dtype, device_map=str(device), **self.pretrained_kwargs()
            ).eval()
        self.device, self.dtype = torch.device(device), dtype

    def modules(self) -> list[torch.nn.Module]:
        return [self.model] if self.model is not None else []

    def _owned_attrs(self) -> tuple[str, ...]:
        return ("processor",)

    def stream_chat(self, request: UnderstandRequest, control: RunControl, **generate_kwargs: Any) -> Iterator[str]:
        """Validated, seeded, streamed chat through ``generate`` with the catalog's sampling params."""
        from umm.sampling import stream_generate

        params = self.spec.capability("understand").validate(request.params)
        yield from stream_generate(
            self.model,
            self.chat_inputs(request.messages),
            self.processor.tokenizer,
            control,
            max_new_tokens=params["max_new_tokens"],
            temperature=params["temperature"],
            top_p=params.get("top_p", 1.0),
            top_k=params.get("top_k", 0),
            generator=self.generator(resolve_seed(request.seed)),
            **generate_kwargs,
        )

    def chat_inputs(self, messages: list[Message]) -> dict[str, Any]:
        """Processor inputs for a chat (template, image placeholders, pixels) on the model's device."""
        conversation, images = chat_conversation(messages, self.system_prompt)
        prompt = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt").to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return dict(inputs)


def chat_conversation(messages: list[Message], system_prompt: str | None = None) -> tuple[list[dict], list]:
    """Chat-template messages with an image part per attached image, and the images in order."""
    conversation: list[dict] = []
    if system_prompt:
        conversation.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    images = []
    for message in messages:
        content: list[dict] = [{"type": "image"} for _ in message.images]
        content.append({"type": "text", "text": message.text})
        images.extend(image.convert("RGB") for image in message.images)
        conversation.append({"role": message.role, "content": content})
    return conversation, images


def _tensors(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    seen: set[int] = set()
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            yield name, tensor


def move_weights(module: torch.nn.Module, device: torch.device) -> None:
    """Move a module's tensors, keeping one reusable host copy (see ``Adapter.to``)."""
    host: dict[str, torch.Tensor] | None = getattr(module, "_umm_host_copy", None)
    if device.type == "cpu":
        if host is None:
            pin = torch.cuda.is_available()
            host = {}
            for name, tensor in _tensors(module):
                copy = tensor.data.to("cpu")
                host[name] = copy.pin_memory() if pin and copy.device.type == "cpu" else copy
            module._umm_host_copy = host
        for name, tensor in _tensors(module):
            tensor.data = host[name]
        return
    for _, tensor in _tensors(module):
        tensor.data = tensor.data.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_seed(seed: int | None) -> int:
    """The seed a run will use: the caller's, or a fresh random one that is then reported."""
    if seed is None or seed < 0:
        return random.randrange(0, 2**31 - 1)
    return int(seed)


_MISSING_MARKERS = (
    "does not appear to have a file named",
    "couldn't connect",
    "cannot find the requested files",
    "is not a local folder and is not a valid model identifier",
    "we couldn't connect",
    "offline mode",
    "localentrynotfound",
    "outgoing traffic has been disabled",
)


@contextlib.contextmanager
def load_errors(spec: ModelSpec) -> Iterator[None]:
    """Turn the many ways ``from_pretrained`` fails into one clear sentence for the user."""
    try:
        yield
    except torch.OutOfMemoryError as err:
        raise OutOfMemoryError(
            f"Out of memory while loading {spec.name} (~{spec.weight_bytes / 1e9:.1f} GB of weights). "
            "Free the accelerator, choose a smaller model, or enable CPU offload."
        ) from err
    except (OSError, ValueError, RuntimeError) as err:
        text = str(err).lower()
        if spec.is_local and _only_pickles(Path(spec.repo)):
            raise ModelLoadError(
                f"{spec.name}: the checkpoint at {spec.repo} ships only pickle (.bin/.pt) weights; "
                "umm loads safetensors only."
            ) from err
        if not spec.is_local and (any(m in text for m in _MISSING_MARKERS) or not weights_present(spec)):
            raise missing_weights_error(spec) from err
        if spec.is_local and "safetensors" in text and not any(Path(spec.repo).rglob("*.safetensors")):
            raise ModelLoadError(f"{spec.name}: no safetensors weights found in {spec.repo}.") from err
        raise ModelLoadError(f"{spec.name} could not be loaded: {err}") from err


def _only_pickles(directory: Path) -> bool:
    pickles = any(p.suffix in {".bin", ".pt", ".pth", ".ckpt"} for p in directory.rglob("*"))
    return pickles and not any(directory.rglob("*.safetensors"))
