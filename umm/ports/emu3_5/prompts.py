"""Upstream's prompt strings (configs/example_config_t2i.py, example_config_x2i.py, config.py)."""

from __future__ import annotations

IMAGE_SLOT = "<|IMAGE|>"
T2I = "<|extra_203|>You are a helpful assistant for t2i task. USER: {question} ASSISTANT: <|extra_100|>"
T2I_UNCOND = "<|extra_203|>You are a helpful assistant. USER:  ASSISTANT: <|extra_100|>"
X2I = "<|extra_203|>You are a helpful assistant for x2i task. USER: <|IMAGE|>{question} ASSISTANT: <|extra_100|>"
X2I_UNCOND = "<|extra_203|>You are a helpful assistant. USER: <|IMAGE|> ASSISTANT: <|extra_100|>"
# Chat: upstream has no understanding template; this is its interleaved template (config.py) without a
# task name, i.e. "... USER: {question}<|IMAGE|> ASSISTANT: <|extra_100|>".
CHAT_SYSTEM = "<|extra_203|>You are a helpful assistant."
CHAT_USER = " USER: {question}{images} ASSISTANT: <|extra_100|>"
CHAT_REPLY_END = "<|extra_101|>"


def t2i_prompts(question: str) -> tuple[str, str]:
    """(conditional, unconditional) prompt strings for text-to-image."""
    return T2I.format(question=question), T2I_UNCOND


def x2i_prompts(question: str, image_blocks: list[str]) -> tuple[str, str]:
    """X2I: the reference image blocks go before the question, in both prompts."""
    images = "".join(image_blocks)
    return X2I.replace(IMAGE_SLOT, images).format(question=question), X2I_UNCOND.replace(IMAGE_SLOT, images)


def chat_prompt(turns: list[tuple[str, str, list[str]]]) -> str:
    """``turns`` = (role, text, image blocks); ends ready for the assistant's next reply."""
    out = CHAT_SYSTEM
    for role, text, images in turns:
        if role == "user":
            out += CHAT_USER.format(question=text, images="".join(images))
        else:
            out += text + CHAT_REPLY_END
    return out
