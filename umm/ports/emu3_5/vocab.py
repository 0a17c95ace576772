"""Small vocabularies in the official file formats, for tiny checkpoints and tests."""

from __future__ import annotations

from pathlib import Path

from umm.ports.emu3_5.tokenizer import VISION_TOKENS_FILE, VOCAB_FILE, visual_token, write_ranks


def byte_order() -> list[int]:
    """The order of the 256 single-byte tokens in ``emu3.tiktoken`` (ranks 0..255, GPT-2's byte order)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    return printable + [b for b in range(256) if b not in printable]


def write_tokenizer_files(directory: Path, n_codes: int, merges: list[bytes] = ()) -> None:
    """``emu3.tiktoken`` with the real byte ranks (plus ``merges``) and ``emu3_vision_tokens.txt``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ranks = {bytes([b]): i for i, b in enumerate(byte_order())}
    for token in merges:
        ranks.setdefault(token, len(ranks))
    write_ranks(directory / VOCAB_FILE, ranks)
    lines = ["<|image token|>", "<|image start|>", "<|image end|>", *(visual_token(c) for c in range(n_codes))]
    (directory / VISION_TOKENS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
