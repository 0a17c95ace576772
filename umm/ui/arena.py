"""Anonymous side-by-side votes, kept locally as JSON lines: the arena protocol on the user's own prompts.

Each line records what was compared (task, prompt, seed, the models in column order with their
settings) and the vote, so a user can rank models later with any Elo / Bradley-Terry script.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

LETTERS = "ABCD"
VOTES_ENV = "UMM_VOTES_FILE"
_lock = threading.Lock()


def votes_path() -> Path:
    return Path(os.environ.get(VOTES_ENV) or Path.home() / ".cache" / "umm" / "arena-votes.jsonl")


def record_vote(comparison: dict[str, Any], vote: str, path: Path | None = None) -> dict[str, Any]:
    """Append one vote ("A".."D" or "tie") on ``comparison`` (what Compare ran) and return the line."""
    columns = comparison.get("columns") or []
    letters = [LETTERS[i] for i in range(len(columns))]
    if vote not in (*letters, "tie"):
        raise ValueError(f"vote must be one of {', '.join([*letters, 'tie'])}; got {vote!r}")
    if any(not c.get("ok") for c in columns):
        raise ValueError("every column must have a result to vote on")
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": comparison.get("task"),
        "prompt": comparison.get("prompt"),
        "seed": comparison.get("seed"),
        "models": [c["model_id"] for c in columns],
        "settings": [c.get("settings") for c in columns],
        "vote": vote,
        "winner": None if vote == "tie" else columns[letters.index(vote)]["model_id"],
    }
    path = path or votes_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")
    return line
