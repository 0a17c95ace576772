"""Emu3.5's text tokenizer: tiktoken over ``emu3.tiktoken`` plus the special and visual tokens.

There is no transformers class for it (upstream ships ``tokenization_emu3.py`` as remote code), so
this small wrapper rebuilds the same ``tiktoken.Encoding``: the BPE ranks of ``emu3.tiktoken``, the
pre-tokenizer pattern below (NFC first), then the specials -- ``<|endoftext|>``, ``<|im_start|>``,
``<|im_end|>``, ``<|extra_0|>`` ... ``<|extra_204|>`` and the lines of ``emu3_vision_tokens.txt``
(``<|image token|>``, ``<|image start|>``, ``<|image end|>``, one ``<|visual token NNNNNN|>`` per
code) -- numbered from right after the last BPE rank (151643 in the real file, as upstream
hard-codes). Every special string is recognised inside text, and ``encode`` adds nothing.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from functools import cached_property
from pathlib import Path

VOCAB_FILE = "emu3.tiktoken"
VISION_TOKENS_FILE = "emu3_vision_tokens.txt"
PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
    r"""\s+(?!\S)|\s+"""
)
SPECIAL_RE = re.compile(r"<\|[^<>|]+\|>")
BASE_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *(f"<|extra_{i}|>" for i in range(205)))

# Roles of special tokens (upstream configs' special_tokens / model_utils.build_emu3p5).
ROLES = {
    "PAD": "<|endoftext|>", "BOS": "<|extra_203|>", "EOS": "<|extra_204|>", "EOL": "<|extra_200|>",
    "EOF": "<|extra_201|>", "TMS": "<|extra_202|>", "IMG": "<|image token|>", "BOI": "<|image start|>",
    "EOI": "<|image end|>", "BSS": "<|extra_100|>", "ESS": "<|extra_101|>", "BOG": "<|extra_60|>",
    "EOG": "<|extra_61|>", "BOC": "<|extra_50|>", "EOC": "<|extra_51|>",
}


def visual_token(code: int) -> str:
    return f"<|visual token {code:06d}|>"


def read_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in Path(path).read_bytes().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def write_ranks(path: Path, ranks: dict[bytes, int]) -> None:
    lines = [f"{base64.b64encode(t).decode()} {r}" for t, r in sorted(ranks.items(), key=lambda kv: kv[1])]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


class Emu35Tokenizer:
    """Encode/decode like upstream's ``Emu3Tokenizer``; ids of the special roles as attributes."""

    def __init__(self, vocab_file: Path, vision_tokens_file: Path) -> None:
        import tiktoken

        self.ranks = read_ranks(vocab_file)
        vision = [t.strip() for t in Path(vision_tokens_file).read_text(encoding="utf-8").splitlines() if t.strip()]
        start = max(self.ranks.values()) + 1
        self.special = {token: start + i for i, token in enumerate((*BASE_SPECIALS, *vision))}
        # Specials are matched here rather than by tiktoken: the same result as registering them with
        # ``allowed_special="all"``, without compiling 131k alternatives into one regex (seconds).
        self.encoding = tiktoken.Encoding("Emu3.5", pat_str=PAT_STR, mergeable_ranks=self.ranks, special_tokens={})
        self.ids = {role: self.special[token] for role, token in ROLES.items()}
        self.bov = self.special[visual_token(0)]  # first visual token; code c is id bov + c
        self.n_codes = sum(1 for t in vision if t.startswith("<|visual token "))
        self._decoder = {v: k for k, v in self.ranks.items()} | {v: k.encode() for k, v in self.special.items()}

    @classmethod
    def from_dir(cls, directory: Path) -> Emu35Tokenizer:
        directory = Path(directory)
        return cls(directory / VOCAB_FILE, directory / VISION_TOKENS_FILE)

    def __len__(self) -> int:
        return max(self.special.values()) + 1

    def encode(self, text: str) -> list[int]:
        text = unicodedata.normalize("NFC", text)
        ids: list[int] = []
        start = 0
        for match in SPECIAL_RE.finditer(text):
            special = self.special.get(match.group())
            if special is None:
                continue
            ids.extend(self.encoding.encode_ordinary(text[start : match.start()]))
            ids.append(special)
            start = match.end()
        ids.extend(self.encoding.encode_ordinary(text[start:]))
        return ids

    def decode_bytes(self, ids: list[int]) -> bytes:
        return b"".join(self._decoder[int(i)] for i in ids if int(i) in self._decoder)

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        if skip_special:
            ids = [i for i in ids if int(i) < self.special["<|endoftext|>"]]
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    @cached_property
    def digit_ids(self) -> dict[str, int]:
        """Ids of '0'..'9' and '*' (single tokens: the pattern splits every digit)."""
        return {ch: self.encode(ch)[0] for ch in "0123456789*"}

    def image_ids(self, codes) -> list[int]:
        """``<|image start|>{h}*{w}<|image token|>`` rows of visual tokens split by EOL, ``<|image end|>``."""
        h, w = codes.shape
        ids = [self.ids["BOI"], *self.encode(f"{h}*{w}"), self.ids["IMG"]]
        for row in range(h):
            ids.extend(self.bov + int(c) for c in codes[row])
            if row < h - 1:
                ids.append(self.ids["EOL"])
        ids.append(self.ids["EOI"])
        return ids

    def image_string(self, codes) -> str:
        return self.decode(self.image_ids(codes))
