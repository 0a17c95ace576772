"""JanusFlow's prompt formats and image-token expansion (upstream ``VLChatProcessor``, "deepseek" format).

Understanding: ``"{system}\\n\\nUser: <image_placeholder>\\n{question}\\n\\nAssistant:"`` with the
processor's system prompt always present, earlier replies closed by ``<｜end▁of▁sentence｜>``; each
``<image_placeholder>`` id becomes ``<begin_of_image>``, n placeholders and ``<end_of_image>``.
Generation: ``"User: {prompt}\\n\\nAssistant:<begin_of_image>"`` with an empty system prompt.
Both are tokenized with BOS.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language."
)
ROLES = {"user": "User", "assistant": "Assistant"}
SPECIAL_TOKENS = {
    "image": "<image_placeholder>",
    "boi": "<begin_of_image>",
    "eoi": "<end_of_image>",
    "gen": "<｜begin▁of▁generation｜>",
}
EOS = "<｜end▁of▁sentence｜>"


def format_conversation(turns: Sequence[tuple[str, str]], system_prompt: str = SYSTEM_PROMPT) -> str:
    """(role, text) turns -> the deepseek format ending in ``"Assistant:"`` (ready for the reply)."""
    text = f"{system_prompt}\n\n" if system_prompt else ""
    for role, content in turns:
        name = ROLES[role]
        text += f"{name}: {content}" + ("\n\n" if role == "user" else EOS)
    return text + f"{ROLES['assistant']}:"


def generation_prompt(prompt: str) -> str:
    """The text-to-image prompt of the upstream demo (tag appended; the sampler drops it)."""
    return format_conversation([("user", prompt)], system_prompt="") + SPECIAL_TOKENS["boi"]


def special_ids(tokenizer) -> dict[str, int]:
    """Ids of the image tokens; a tokenizer without them cannot drive this model."""
    ids = {}
    for name, token in SPECIAL_TOKENS.items():
        index = tokenizer.convert_tokens_to_ids(token)
        if index is None or index == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {token!r} token")
        ids[name] = int(index)
    return ids


def expand_image_tokens(
    input_ids: torch.Tensor, ids: dict[str, int], num_image_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D ids -> (expanded ids, image-position mask covering each BOI and its placeholders)."""
    pieces = []
    image = ids["image"]
    block = torch.tensor([ids["boi"], *[image] * num_image_tokens, ids["eoi"]], dtype=input_ids.dtype)
    for token in input_ids.tolist():
        pieces.append(block if token == image else torch.tensor([token], dtype=input_ids.dtype))
    expanded = torch.cat(pieces) if pieces else input_ids
    mask = (expanded == image) | (expanded == ids["boi"])
    return expanded, mask
