"""The catalog is data: every entry validates, and malformed entries fail with a clear message."""

from __future__ import annotations

import copy

import pytest
import yaml

from umm.catalog import MODELS_DIR, load_catalog, parse_spec
from umm.errors import CatalogError, InputError
from umm.registry import FAMILIES

ENTRY = yaml.safe_load((MODELS_DIR / "janus-pro-1b.yaml").read_text())


def test_every_entry_validates_and_names_its_file(real_catalog):
    assert len(real_catalog) >= 2
    for spec in real_catalog:
        assert spec.family in FAMILIES
        assert spec.capabilities
        assert spec.weight_bytes > 0
        assert spec.links.get("homepage") or spec.links.get("hub")
        for cap in spec.capabilities.values():
            assert cap.validate({}) == cap.defaults()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(colour="blue"), "unknown key"),
        (lambda d: d.update(family="nope"), "unknown family"),
        (lambda d: d.update(dtype="int3"), "dtype must be"),
        (lambda d: d.pop("repo"), "missing key"),
        (lambda d: d["capabilities"].update(dance={}), "unknown capability"),
        (lambda d: d["capabilities"]["understand"].update(max_images=0), "max_images must be"),
        (lambda d: d["capabilities"]["generate"].update(ordered=[["num_images", "nope"]]), "ordered must list"),
        (lambda d: d["capabilities"]["generate"]["params"]["num_images"].update(default=99), "default is invalid"),
        (lambda d: d["capabilities"]["generate"]["params"]["num_images"].update(min=9), "greater than max"),
        (lambda d: d["capabilities"]["generate"]["params"]["num_images"].update(kind="x"), "unknown key"),
        (lambda d: d["capabilities"]["generate"]["params"]["num_images"].update(type="complex"), "type must be"),
    ],
)
def test_malformed_entries_are_rejected_with_a_reason(mutate, message):
    data = copy.deepcopy(ENTRY)
    mutate(data)
    with pytest.raises(CatalogError, match=message) as info:
        parse_spec(data, source="bad.yaml")
    assert str(info.value).startswith("bad.yaml:")


def test_file_name_must_match_id(tmp_path):
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(ENTRY))
    with pytest.raises(CatalogError, match="must match the file name"):
        load_catalog(tmp_path)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"num_images": 0}, "between 1 and 8"),
        ({"num_images": 2.5}, "whole number"),
        ({"guidance_scale": "lots"}, "must be a number"),
        ({"guidance_scale": float("nan")}, "finite"),
        ({"temperature": 99}, "between 0 and 2"),
        ({"steps": 3}, "Unknown parameter"),
    ],
)
def test_parameter_validation_names_the_problem(real_catalog, params, message):
    cap = real_catalog.get("janus-pro-1b").capability("generate")
    with pytest.raises(InputError, match=message):
        cap.validate(params)


def test_unknown_model_lists_the_known_ones(real_catalog):
    with pytest.raises(InputError, match=r"Unknown model 'nope'.*janus-pro-1b"):
        real_catalog.get("nope")


def test_importing_umm_imports_no_model_code():
    import subprocess
    import sys

    code = (
        "import sys, umm, umm.catalog, umm.registry; umm.list_models();"
        "bad = [m for m in ('torch', 'transformers', 'diffusers', 'gradio') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_model_table_matches_the_catalog(real_catalog):
    from umm.catalog import markdown_table

    readme = (MODELS_DIR.parents[1] / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- models:start -->\n", "\n<!-- models:end -->"
    table = readme[readme.index(start) + len(start) : readme.index(end)]
    assert table == markdown_table(real_catalog), "regenerate with: python -m umm table"


def test_image_counts_are_checked_per_capability(real_catalog):
    understand = real_catalog.get("janus-pro-1b").capability("understand")
    understand.check_images(understand.max_images)
    with pytest.raises(InputError, match=f"at most {understand.max_images} input image"):
        understand.check_images(understand.max_images + 1)
    edit = real_catalog.get("omnigen2").capability("edit")
    with pytest.raises(InputError, match="at least one input image"):
        edit.check_images(0)


def test_ordered_parameters_are_checked_before_the_queue(real_catalog):
    cap = real_catalog.get("omnigen2").capability("edit")
    assert cap.validate({"cfg_range_start": 0.2, "cfg_range_end": 0.8})["cfg_range_end"] == 0.8
    with pytest.raises(InputError, match=r"CFG range start .* must not be greater than CFG range end"):
        cap.validate({"cfg_range_start": 0.8, "cfg_range_end": 0.2})
