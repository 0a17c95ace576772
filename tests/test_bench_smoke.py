"""Smoke test of bench/: every benchmark runs in its quick mode and writes a JSON record with its keys.

Not a timed test: the numbers are not checked, only that the scripts run and report.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


CASES = [
    ("adapter_overhead", ["--quick"], {"sizes", "target_ratio", "machine"}),
    ("load_swap", ["--quick"], {"ratio_cold_vs_bare", "ratio_host_vs_cold", "evict_to_host_s", "evict_drop_s"}),
    ("memory_hygiene", ["--quick"], {"rss_first", "rss_last", "rss_max", "rss_growth", "rss_ok", "gpu_ok"}),
    ("generation_gpu", ["--tiny", "--static", "--reps", "1", "--emu3-cfg"], {"models", "tiny", "device"}),
]


@pytest.mark.parametrize(("name", "argv", "keys"), CASES, ids=[c[0] for c in CASES])
def test_benchmark_writes_its_record(bench_modules, tmp_path, name, argv, keys):
    bench_modules(name).main([*argv, "--out-dir", str(tmp_path)])
    written = list(tmp_path.glob("*.json"))
    assert len(written) == 1
    record = json.loads(written[0].read_text())
    assert keys <= set(record), sorted(keys - set(record))
    assert record["benchmark"] == written[0].stem
    if name == "adapter_overhead":
        tiny = record["sizes"]["tiny"]
        assert {"text", "image", "image_token_loop"} <= set(tiny)
        assert tiny["text_replies_identical"] is True
        assert tiny["image_greedy_token_match"] == 1.0
    if name == "generation_gpu":
        assert {"hf", "ours", "static"} <= set(record["models"]["janus"]["cases"])
        assert {"hf", "static"} <= set(record["models"]["emu3"]["cases"])


def test_generation_gpu_skips_cleanly_without_cuda(bench_modules, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert bench_modules("generation_gpu").main([]) is None
    assert "SKIP" in capsys.readouterr().out
