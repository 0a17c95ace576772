"""The shapes model's architecture, tokenizer and processor: the real transformers Janus classes.

Sizes follow the world: 96 px images in 16 px patches give 36 image tokens for both the SigLIP
understanding tower and the VQ tokenizer (four 2x downsamples), so one token is one quarter of a
grid cell.
"""

from __future__ import annotations

from umm.adapters.janus import JANUS_TURNS
from umm.shapes.world import COLOURS, IMAGE_SIZE, SHAPES, vocabulary_corpus
from umm.shapes.world import SIZES as SHAPE_SIZES

PATCH = 16
NUM_IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2
# One VQ code per patch the world can show: a quarter of a (colour, shape, size) variant, or background,
# which has one code per token position (see umm/shapes/train.py).
NUM_CODES = NUM_IMAGE_TOKENS + 4 * len(COLOURS) * len(SHAPES) * len(SHAPE_SIZES)
SPECIALS = {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>", "pad_token": "<｜▁pad▁｜>"}
IMAGE_SPECIALS = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}
SIZES: dict = {
    "text": {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 8,
             "num_key_value_heads": 8, "max_position_embeddings": 512},
    "vision": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
    # VQ channels are multiples of 32 (GroupNorm); five levels downsample 16x: 96 px -> 6x6 tokens.
    # No residual blocks besides the decoder's one per level: full-resolution convolutions are most of
    # the training cost on a CPU, and the world's patches are simple.
    "vq": {"embed_dim": 8, "num_embeddings": NUM_CODES, "latent_channels": 32, "base_channels": 32,
           "channel_multiplier": [1, 1, 1, 1, 1], "num_res_blocks": 0},
}
# The Janus-Pro prompt format ("<|User|>:" / "<|Assistant|>:" turns, an image placeholder per image)
# without the system sentence, which would only lengthen every training sequence.
CHAT_TEMPLATE = "{{ bos_token }}" + JANUS_TURNS


def build_tokenizer():
    """A byte-level BPE tokenizer in which every word of the world's grammar is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=448,
        special_tokens=[*SPECIALS.values(), *IMAGE_SPECIALS.values()],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [*vocabulary_corpus(), "<|User|>: <|Assistant|>: \n\n"]
    tokenizer.train_from_iterator(corpus * 8, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, extra_special_tokens=IMAGE_SPECIALS, **SPECIALS)


def build(seed: int = 0):
    """A freshly initialised ``(model, processor)`` pair with the generation config Janus needs."""
    import torch
    from transformers import (
        GenerationConfig,
        JanusConfig,
        JanusForConditionalGeneration,
        JanusImageProcessorPil,
        JanusProcessor,
    )

    tokenizer = build_tokenizer()
    hidden = SIZES["text"]["hidden_size"]
    config = JanusConfig(
        text_config={
            "model_type": "llama", "tie_word_embeddings": False, **SIZES["text"], "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={**SIZES["vision"], "image_size": IMAGE_SIZE, "patch_size": PATCH, "projection_dim": hidden,
                       "num_image_tokens": NUM_IMAGE_TOKENS},
        vq_config={**SIZES["vq"], "projection_dim": hidden, "image_token_embed_dim": hidden},
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_SPECIALS["image_token"]),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        generation_kwargs={"boi_token_id": tokenizer.convert_tokens_to_ids(IMAGE_SPECIALS["boi_token"])},
    )
    image_processor = JanusImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = JanusProcessor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE,
                               num_image_tokens=NUM_IMAGE_TOKENS)
    return model, processor
