"""The Emu3.5 CFG benchmark runs in its quick mode and writes its record (no timing asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_cfg_benchmark_quick_mode_writes_its_record(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import emu3_5_cfg

        emu3_5_cfg.main(["--quick", "--out-dir", str(tmp_path)])
    finally:
        sys.path.remove(str(BENCH))
    record = json.loads((tmp_path / "emu3_5_cfg.json").read_text())
    assert {"two_forwards", "batched"} <= set(record["times"])
    assert record["ids_agree"] == 1.0 and record["tokens"] == 2 + 3 + 3 * 5
