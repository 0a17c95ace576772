"""Parity of the OmniGen2 port with golden outputs of the upstream implementation (fp32, CPU).

The golden folder holds a tiny transformer saved by upstream's ``save_pretrained`` (official names and
layout) plus forward and 3-step editing traces; see its README.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from umm.ports.omnigen2 import OmniGen2Transformer2DModel, tiny_transformer_config
from umm.ports.omnigen2.sampler import Conditioning, guided_velocity, sample, time_grid

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "omnigen2"
TOL = 1e-4

needs_golden = pytest.mark.skipif(
    not (GOLDEN / "transformer" / "config.json").is_file(),
    reason=f"OmniGen2 golden data not found at {GOLDEN} (../shared next to the repo)",
)


@pytest.fixture(scope="module")
def model() -> OmniGen2Transformer2DModel:
    return OmniGen2Transformer2DModel.from_pretrained(
        GOLDEN, subfolder="transformer", torch_dtype=torch.float32
    ).eval()


def _case(name: str) -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / f"case_{name}.safetensors")


def _forward(
    model: OmniGen2Transformer2DModel,
    case: dict[str, torch.Tensor],
    refs: bool = True,
    mask: bool = True,
) -> torch.Tensor:
    text_mask = (
        case["text_attention_mask"]
        if mask
        else torch.ones_like(case["text_attention_mask"])
    )
    ref = case.get("ref_image_hidden_states_0_0")
    with torch.no_grad():
        return model(
            case["hidden_states"],
            case["timestep"],
            case["text_hidden_states"],
            text_mask,
            [[ref]] if refs and ref is not None else None,
        )


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@needs_golden
@pytest.mark.parametrize("name", ["t2i", "edit"])
def test_forward_matches_golden(model: OmniGen2Transformer2DModel, name: str) -> None:
    case = _case(name)
    out = _forward(model, case)
    assert out.shape == case["hidden_states"].shape
    assert _maxdiff(out, case["output"]) <= TOL


@needs_golden
def test_golden_comparison_detects_ignored_inputs(
    model: OmniGen2Transformer2DModel,
) -> None:
    """Dropping the reference image or the text mask must break parity, so the tests above can fail."""
    case = _case("edit")
    assert _maxdiff(_forward(model, case, refs=False), case["output"]) > 100 * TOL
    assert _maxdiff(_forward(model, case, mask=False), case["output"]) > 10 * TOL


@needs_golden
def test_edit_sampling_trace_matches_golden(model: OmniGen2Transformer2DModel) -> None:
    trace = load_file(GOLDEN / "case_edit_sampling.safetensors")
    cond = Conditioning(
        trace["text_hidden_states"],
        trace["text_attention_mask"],
        trace["negative_text_hidden_states"],
        trace["negative_text_attention_mask"],
        [[trace["ref_image_hidden_states_0_0"]]],
    )
    latents = trace["init_latents"]
    times = time_grid(3, latents.shape[-2] * latents.shape[-1])
    assert _maxdiff(times, trace["timesteps"]) <= 1e-6
    times = torch.cat([times, torch.ones(1)])
    x = latents
    with torch.no_grad():
        for i in range(3):
            v = guided_velocity(
                model, x, times[i], cond, text_scale=5.0, image_scale=2.0
            )
            assert _maxdiff(v, trace[f"velocity_step{i}"]) <= TOL, f"velocity_step{i}"
            x = x + (times[i + 1] - times[i]) * v
    seen: list[tuple[int, int]] = []
    for batch_passes in (True, False):
        final = sample(
            model,
            cond,
            latents=latents,
            num_steps=3,
            text_guidance_scale=5.0,
            image_guidance_scale=2.0,
            batch_passes=batch_passes,
            on_step=lambda done, total: seen.append((done, total)),
        )
        assert _maxdiff(final, trace["final_latents"]) <= TOL
    assert seen == [(1, 3), (2, 3), (3, 3)] * 2


def test_ragged_batch_matches_single_samples() -> None:
    """Per-sample ref lists of different counts/sizes, padded text, mixed target sizes: padding is inert."""
    torch.manual_seed(0)
    model = OmniGen2Transformer2DModel(**tiny_transformer_config()).eval()
    targets = [torch.randn(16, 8, 8), torch.randn(16, 6, 10), torch.randn(16, 4, 4)]
    refs = [
        [torch.randn(16, 6, 4)],
        [torch.randn(16, 4, 4), torch.randn(16, 8, 2)],
        None,
    ]
    text = torch.randn(3, 5, 32)
    mask = torch.arange(5)[None] < torch.tensor([[5], [3], [1]])
    t = torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        batched = model(targets, t, text, mask, refs)
        for i in range(3):
            single = model(
                [targets[i]], t[i : i + 1], text[i : i + 1], mask[i : i + 1], [refs[i]]
            )[0]
            assert single.shape == targets[i].shape
            assert _maxdiff(batched[i], single) <= 1e-5
    with pytest.raises(ValueError, match="right-padded"):
        model(
            targets[:1],
            t[:1],
            text[:1],
            torch.tensor([[False, True, True, True, True]]),
        )


def test_save_pretrained_roundtrip(tmp_path: Path) -> None:
    model = OmniGen2Transformer2DModel(**tiny_transformer_config())
    model.save_pretrained(tmp_path / "transformer")
    loaded, info = OmniGen2Transformer2DModel.from_pretrained(
        tmp_path, subfolder="transformer", output_loading_info=True
    )
    assert (
        not info["missing_keys"]
        and not info["unexpected_keys"]
        and not info["mismatched_keys"]
    )
    reference = model.state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, reference[name]), name
    if (
        GOLDEN / "transformer"
    ).is_dir():  # the golden (upstream-saved) layout has exactly our names and shapes
        golden = load_file(
            GOLDEN / "transformer" / "diffusion_pytorch_model.safetensors"
        )
        assert {k: v.shape for k, v in golden.items()} == {
            k: v.shape for k, v in reference.items()
        }


# -- further golden cases: several references, per-sample time, CFG range, text-only guidance -------------
def _meta() -> dict:
    import json

    return json.loads((GOLDEN / "meta.json").read_text())


def _refs(case: dict[str, torch.Tensor], batch: int) -> list[list[torch.Tensor] | None]:
    """``ref_image_hidden_states_<sample>_<j>`` tensors as per-sample lists, in index order."""
    refs: list[list[torch.Tensor] | None] = []
    for b in range(batch):
        keys = sorted((k for k in case if k.startswith(f"ref_image_hidden_states_{b}_")),
                      key=lambda k: int(k.rsplit("_", 1)[1]))
        refs.append([case[k] for k in keys] or None)
    return refs


def _trace_conditioning(trace: dict[str, torch.Tensor]) -> Conditioning:
    return Conditioning(
        trace["text_hidden_states"],
        trace["text_attention_mask"],
        trace["negative_text_hidden_states"],
        trace["negative_text_attention_mask"],
        _refs(trace, trace["init_latents"].shape[0]),
    )


@needs_golden
def test_multiref_forward_with_a_timestep_per_sample(model: OmniGen2Transformer2DModel) -> None:
    case = _case("multiref")
    batch = case["hidden_states"].shape[0]
    refs = _refs(case, batch)
    assert [len(r or []) for r in refs] == [2, 1]
    with torch.no_grad():
        out = model(case["hidden_states"], case["timestep"], case["text_hidden_states"],
                    case["text_attention_mask"], refs)
    assert _maxdiff(out, case["output"]) <= TOL


def _pass_inputs(trace: dict[str, torch.Tensor], which: str):
    refs = _refs(trace, trace["init_latents"].shape[0])
    if which == "cond":
        return trace["text_hidden_states"], trace["text_attention_mask"], refs
    negative = trace["negative_text_hidden_states"], trace["negative_text_attention_mask"]
    return (*negative, refs) if which == "ref" else (*negative, None)


@needs_golden
@pytest.mark.parametrize("name", ["cfg_range_sampling", "text_guidance_sampling", "edit_sampling"])
@pytest.mark.parametrize("batch_passes", [True, False])
def test_sampling_traces_step_by_step(model: OmniGen2Transformer2DModel, name: str, batch_passes: bool) -> None:
    """Every recorded pass, combined velocity and latent of each step, then the whole ``sample`` run.

    The settings (steps, scales, CFG range, which steps are guided) are read from meta.json.
    """
    settings = _meta()["sampling"][name]
    trace = load_file(GOLDEN / f"case_{name}.safetensors")
    cond = _trace_conditioning(trace)
    steps, (low, high) = settings["steps"], settings["cfg_range"]
    s_t, s_i = settings["text_guidance_scale"], settings["image_guidance_scale"]
    latents = trace["init_latents"]
    times = time_grid(steps, latents.shape[-2] * latents.shape[-1])
    assert _maxdiff(times, trace["timesteps"]) <= 1e-6
    times = torch.cat([times, torch.ones(1)])
    x = latents
    with torch.no_grad():
        for i in range(steps):
            active = low <= i / steps <= high
            assert active == settings["guidance_active"][i]
            for which in ("cond", "ref", "uncond"):
                key = f"velocity_{which}_step{i}"
                if key in trace:  # the passes upstream ran at this step
                    h, m, refs = _pass_inputs(trace, which)
                    v = model(x, times[i].expand(x.shape[0]), h, m, refs)
                    assert _maxdiff(v, trace[key]) <= TOL, key
            v = guided_velocity(model, x, times[i], cond, text_scale=s_t if active else 1.0,
                                image_scale=s_i if active else 1.0, batch_passes=batch_passes)
            assert _maxdiff(v, trace[f"velocity_step{i}"]) <= TOL, f"velocity_step{i}"
            x = (x.float() + (times[i + 1] - times[i]) * v.float()).to(v.dtype)
            if f"latents_step{i}" in trace:
                assert _maxdiff(x, trace[f"latents_step{i}"]) <= TOL, f"latents_step{i}"
    seen: list[tuple[int, int]] = []
    final = sample(model, cond, latents=latents, num_steps=steps, text_guidance_scale=s_t,
                   image_guidance_scale=s_i, cfg_range=(low, high), batch_passes=batch_passes,
                   on_step=lambda done, total: seen.append((done, total)))
    assert _maxdiff(final, trace["final_latents"]) <= TOL
    assert seen == [(i + 1, steps) for i in range(steps)]
