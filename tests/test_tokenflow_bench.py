"""bench/tokenflow_kv_cache.py runs in its quick mode and reports identical tokens (not a timed test)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_kv_cache_bench_quick_mode(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        importlib.import_module("tokenflow_kv_cache").main(["--quick", "--out-dir", str(tmp_path)])
    finally:
        sys.path.remove(str(BENCH))
    record = json.loads((tmp_path / "tokenflow_kv_cache.json").read_text())
    case = record["sizes"]["tiny"]["strategies"]["1"]
    assert record["image_tokens"] == 817 and case["tokens_identical"] is True
    assert {"kv_cache", "recompute", "speedup"} <= set(case)
