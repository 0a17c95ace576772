"""A tiny random Emu3.5 written in the official layouts (a few hundred KB, loads in well under a second).

Main repo (``BAAI/Emu3.5`` / ``BAAI/Emu3.5-Image`` layout): ``config.json`` with upstream's
``model_type: "Emu3"`` fields, ``generation_config.json``, sharded ``model-0000N-of-0000M.safetensors``
with ``model.safetensors.index.json`` and the tokenizer files ``emu3.tiktoken`` /
``emu3_vision_tokens.txt``. Vision tokenizer repo (``BAAI/Emu3.5-VisionTokenizer``): ``config.yaml``
(``IBQ(**cfg)``) and the pickle ``model.ckpt``, converted to safetensors the way a user does it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from umm.ports.emu3_5.tokenizer import BASE_SPECIALS
from umm.ports.emu3_5.vocab import write_tokenizer_files

N_CODES = 32
IBQ_CONFIG = {
    "ddconfig": {
        "double_z": False, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
        "ch_mult": [1, 1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [4], "dropout": 0.0,
    },
    "n_embed": N_CODES,
    "embed_dim": 8,
}
MERGES = [b"th", b"the", b" the", b"in", b" a", b"at", b"is", b"ca", b"cat", b"re", b"ed", b"on"]


def build_tiny(directory: Path, vision_dir: Path) -> None:
    from safetensors.torch import save_file
    from transformers import Qwen3ForCausalLM

    from umm.convert import convert_file
    from umm.ports.emu3_5.ibq import IBQ
    from umm.ports.emu3_5.llm import qwen3_config

    directory, vision_dir = Path(directory), Path(vision_dir)
    write_tokenizer_files(directory, N_CODES, MERGES)
    n_text = 256 + len(MERGES)
    special = {token: n_text + i for i, token in enumerate(BASE_SPECIALS)}
    img = n_text + len(BASE_SPECIALS)
    vocab = img + 3 + N_CODES
    config = {
        "architectures": ["Emu3ForCausalLM"], "model_type": "Emu3", "vocab_size": vocab, "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": False, "attention_dropout": 0.1,
        "pad_token_id": special["<|endoftext|>"], "bos_token_id": special["<|extra_203|>"],
        "eos_token_id": special["<|extra_204|>"], "img_token_id": img, "boi_token_id": img + 1,
        "eoi_token_id": img + 2, "eol_token_id": special["<|extra_200|>"], "eof_token_id": special["<|extra_201|>"],
        "image_area": 518400, "torch_dtype": "float32",
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "generation_config.json").write_text(json.dumps({
        "bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
        "pad_token_id": config["pad_token_id"],
    }, indent=2), encoding="utf-8")
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(qwen3_config(config)).eval()
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)  # peaked outputs: seeds and guidance visibly matter
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    names = sorted(state)
    shards = [names[: len(names) // 2], names[len(names) // 2 :]]
    weight_map = {}
    for i, part in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: state[k] for k in part}, directory / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    total = sum(v.numel() * v.element_size() for v in state.values())
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2), encoding="utf-8"
    )
    vision_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    (vision_dir / "config.yaml").write_text(yaml.safe_dump(IBQ_CONFIG, sort_keys=False), encoding="utf-8")
    vq = IBQ(**IBQ_CONFIG).eval()
    torch.save(vq.state_dict(), vision_dir / "model.ckpt")  # the official file is this pickle
    convert_file(vision_dir / "model.ckpt")
