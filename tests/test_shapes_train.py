"""The training script on a tiny budget: losses go down and a loadable checkpoint is written."""

from __future__ import annotations

import numpy as np
import torch

from umm.control import RunControl


def test_training_a_few_steps(tmp_path) -> None:
    from umm.shapes import train

    # two threads: the VQ trains in a spawned process while the LM starts, and the LM joins it at step 4
    train.main(["--out", str(tmp_path), "--vq-steps", "10", "--vq-batch", "4", "--vision-steps", "4",
                "--lm-steps", "10", "--lm-batch", "4", "--threads", "2", "--join-step", "4", "--no-eval"])
    for name in ("model.safetensors.index.json", "config.json", "generation_config.json", "tokenizer.json",
                 "processor_config.json", "chat_template.jinja"):
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "parts").exists()

    from umm.shapes.evaluate import load_adapter

    adapter = load_adapter(tmp_path)
    tokens = adapter.sample_image_tokens("a red circle", num_images=1, guidance_scale=2.0, temperature=1.0,
                                         generator=torch.Generator().manual_seed(0), control=RunControl())
    assert adapter.decode(tokens)[0].size == (96, 96)


def test_losses_decrease() -> None:
    from umm.shapes import train
    from umm.shapes.model import build

    model, processor = build(0)
    vq_losses = train.train_vq(model.model.vqmodel, steps=24, batch=4, seed=0, encoder_steps=1)
    assert np.mean(vq_losses[-6:]) < np.mean(vq_losses[:6])
    losses = train.train_lm(model, train.Batches(processor, 1), steps=16, batch=4, lr=3e-3)
    assert np.mean(losses[-4:], axis=0).sum() < np.mean(losses[:4], axis=0).sum()
