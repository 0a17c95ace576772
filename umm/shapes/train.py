"""Train the shapes Janus model from scratch: VQ tokenizer first, then the LM on mixed batches.

    python -m umm.shapes.train --out assets/shapes-janus

Deterministic for a given seed and thread count. The VQ stage learns the world's image patches;
the LM stage then trains the SigLIP tower, aligners, Llama and generation head on understanding
(image + question -> answer) and generation (caption -> VQ tokens, with caption dropout for
classifier-free guidance) batches, with the VQ frozen. Ends with the evaluation table.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from umm.shapes import world
from umm.shapes.model import IMAGE_SPECIALS, NUM_IMAGE_TOKENS, build

log = logging.getLogger("umm.shapes.train")
GRID = world.IMAGE_SIZE // 16  # image tokens per side
UNCOND_RATE = 0.1  # captions dropped to train the unconditional branch of CFG


def pixels(scenes) -> torch.Tensor:
    """Rendered scenes in the processor's normalisation ([-1, 1], channels first)."""
    array = np.stack([world.render(s) for s in scenes]).astype(np.float32)
    return torch.from_numpy(array / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def _schedule(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


# -- VQ --------------------------------------------------------------------------------------
# Scenes are aligned with tokens, so every token shows one of a fixed set of patches: a quarter of
# one (colour, shape, size) variant, or background. The tokenizer gets one code per patch (code 0 is
# background) instead of discovering them by clustering, which on a CPU takes far longer.
VARIANTS = [(c, s, z) for c in world.COLOURS for s in world.SHAPES for z in world.SIZES]
NUM_CODES = 1 + 4 * len(VARIANTS)


def scene_codes(scene) -> torch.Tensor:
    """The scene's 36 VQ codes in raster order."""
    grid = torch.zeros(GRID, GRID, dtype=torch.long)
    for item in scene:
        row, col = divmod(item.cell, 3)
        variant = VARIANTS.index((item.colour, item.shape, item.size))
        for quarter in range(4):
            grid[2 * row + quarter // 2, 2 * col + quarter % 2] = 1 + 4 * variant + quarter
    return grid.flatten()


def weight(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss weights: shapes cover a tenth of an image but are all that matters."""
    background = torch.tensor(world.BACKGROUND, dtype=x.dtype).view(1, 3, 1, 1) / 127.5 - 1.0
    return 1.0 + 9.0 * ((x - background).abs().sum(1, keepdim=True) > 0.05).to(x.dtype)


def _cell_crops(scenes, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """One 32 px cell per scene (2x2 tokens) and its codes, usually a cell with a shape in it."""
    x = pixels(scenes)
    crops, codes = [], []
    for i, scene in enumerate(scenes):
        cell = rng.choice(scene).cell if rng.random() < 0.9 else rng.randrange(9)
        row, col = divmod(cell, 3)
        crops.append(x[i, :, row * world.CELL:(row + 1) * world.CELL, col * world.CELL:(col + 1) * world.CELL])
        codes.append(scene_codes(scene).view(GRID, GRID)[2 * row:2 * row + 2, 2 * col:2 * col + 2])
    return torch.stack(crops), torch.stack(codes)


def _reset(module: torch.nn.Module) -> None:
    """PyTorch's default init: the hub init (normal, std 0.02) trains this conv stack far slower."""
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.reset_parameters()


def decode_codes(vq, codes: torch.Tensor) -> torch.Tensor:
    """``JanusVQVAE.decode`` for a code grid of any size (cell crops in training)."""
    entry = F.normalize(vq.quantize.embedding(codes), dim=-1).permute(0, 3, 1, 2)
    return vq.decoder(vq.post_quant_conv(entry))


def train_vq(vq, *, steps: int, batch: int, seed: int, lr: float = 2e-3, full_fraction: float = 0.4,
             encoder_steps: int | None = None) -> list[float]:
    """Train the decoder (with the codebook) to draw codes, then the encoder to read them back.

    Most decoder steps see single cells (a ninth of the pixels, and every patch occurs inside one
    cell); the last ``full_fraction`` see whole images, so normalisation statistics match the
    images the model will decode. The encoder is trained to pick each patch's code by cosine
    similarity, the nearest-code rule the hub encode applies to a unit-norm codebook.
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    _reset(vq)
    vq.train()
    decoder_params = [*vq.decoder.parameters(), *vq.post_quant_conv.parameters(), vq.quantize.embedding.weight]
    opt = torch.optim.Adam(decoder_params, lr=lr, betas=(0.9, 0.99))
    losses = []
    started = time.perf_counter()
    full_from = int(steps * (1 - full_fraction))
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * _schedule(step, steps, min(20, steps // 5 + 1))
        scenes = [world.random_scene(rng) for _ in range(batch)]
        if step >= full_from:
            scenes = scenes[: max(1, batch // 4)]
            x, codes = pixels(scenes), torch.stack([scene_codes(s).view(GRID, GRID) for s in scenes])
        else:
            x, codes = _cell_crops(scenes, rng)
        recon = decode_codes(vq, codes)
        error = (recon - x).abs() + (recon - x).pow(2)
        loss = (error * weight(x)).sum() / weight(x).sum() / 3
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log.info("vq decoder step %d/%d  loss %.4f  %.0fs", step + 1, steps, np.mean(losses[-50:]),
                     time.perf_counter() - started)
    with torch.no_grad():  # unit-norm codes: the hub encode (L2 argmin) then matches cosine matching
        vq.quantize.embedding.weight.copy_(F.normalize(vq.quantize.embedding.weight, dim=-1))
    encoder_params = [*vq.encoder.parameters(), *vq.quant_conv.parameters()]
    opt = torch.optim.Adam(encoder_params, lr=lr)
    book = vq.quantize.embedding.weight.detach()
    encoder_steps = steps // 4 if encoder_steps is None else encoder_steps
    for step in range(encoder_steps):
        scenes = [world.random_scene(rng) for _ in range(max(1, batch // 4))]
        z = F.normalize(vq.quant_conv(vq.encoder(pixels(scenes))), dim=1).permute(0, 2, 3, 1).flatten(0, 2)
        codes = torch.cat([scene_codes(s) for s in scenes])
        loss = F.cross_entropy(z @ book.T / 0.05, codes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == encoder_steps - 1:
            log.info("vq encoder step %d/%d  loss %.4f  %.0fs", step + 1, encoder_steps, loss.item(),
                     time.perf_counter() - started)
    vq.eval()
    return losses


def encoder_accuracy(vq, scenes) -> float:
    """How often the hub ``encode`` returns the designed code of a token."""
    with torch.no_grad():
        tokens = vq.encode(pixels(scenes)).image_tokens.view(len(scenes), -1)
    return (tokens == torch.stack([scene_codes(s) for s in scenes])).float().mean().item()


# -- LM --------------------------------------------------------------------------------------
class Batches:
    """Token sequences exactly as the processor and the Janus adapter build them."""

    def __init__(self, processor, seed: int) -> None:
        self.tokenizer = processor.tokenizer
        self.rng = random.Random(seed)
        tok = self.tokenizer
        self.bos, self.eos, self.pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
        self.boi = tok.convert_tokens_to_ids(IMAGE_SPECIALS["boi_token"])
        self.eoi = tok.convert_tokens_to_ids(IMAGE_SPECIALS["eoi_token"])
        self.image = tok.convert_tokens_to_ids(IMAGE_SPECIALS["image_token"])
        self.processor = processor

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def understanding(self, size: int):
        scenes = [world.random_scene(self.rng) for _ in range(size)]
        qs = [world.random_question(s, self.rng) for s in scenes]
        image = f"{IMAGE_SPECIALS['boi_token']}{IMAGE_SPECIALS['image_token'] * NUM_IMAGE_TOKENS}" \
                f"{IMAGE_SPECIALS['eoi_token']}"
        prompts = self._ids([f"<|User|>: {image}\n{q.text}\n\n<|Assistant|>:" for q in qs])
        answers = self._ids([f" {q.answer}" for q in qs])
        rows = [[self.bos, *p, *a, self.eos] for p, a in zip(prompts, answers, strict=True)]
        length = max(map(len, rows))
        ids = torch.full((size, length), self.pad)
        labels = torch.full((size, length), -100)
        for i, (row, a) in enumerate(zip(rows, answers, strict=True)):
            ids[i, : len(row)] = torch.tensor(row)
            labels[i, len(row) - len(a) - 1: len(row)] = torch.tensor([*a, self.eos])
        return ids, labels, pixels(scenes)

    def generation(self, size: int):
        scenes = [world.random_scene(self.rng) for _ in range(size)]
        prompts = self._ids([f"<|User|>: {world.caption(s, self.rng)}\n\n<|Assistant|>:" for s in scenes])
        rows = []
        for p in prompts:
            row = [self.bos, *p, self.boi]
            if self.rng.random() < UNCOND_RATE:  # the adapter's unconditional row: BOS, pads, BOI
                row = [self.bos, *[self.pad] * len(p), self.boi]
            rows.append(row)
        codes = torch.stack([scene_codes(s) for s in scenes])
        return rows, codes


def gen_loss(model, rows: list[list[int]], codes: torch.Tensor) -> torch.Tensor:
    """Next-image-token loss: prompt embeddings, then the generation embeddings of the codes."""
    embed = model.get_input_embeddings()
    hidden = embed.weight.shape[1]
    lengths = [len(r) for r in rows]
    total = max(lengths) + NUM_IMAGE_TOKENS - 1
    image_embeds = model.prepare_embeddings_for_image_generation(codes[:, :-1])
    inputs = torch.zeros(len(rows), total, hidden)
    index = torch.zeros(len(rows), NUM_IMAGE_TOKENS, dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        inputs[i, :n] = embed(torch.tensor(row))
        inputs[i, n: n + NUM_IMAGE_TOKENS - 1] = image_embeds[i]
        index[i] = torch.arange(n - 1, n - 1 + NUM_IMAGE_TOKENS)
    out = model.model.language_model(inputs_embeds=inputs).last_hidden_state
    picked = out.gather(1, index[..., None].expand(-1, -1, hidden))
    logits = model.model.generation_head(picked)
    return F.cross_entropy(logits.flatten(0, 1), codes.flatten())


def und_loss(model, ids, labels, pixel_values) -> torch.Tensor:
    logits = model(input_ids=ids, pixel_values=pixel_values).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)


def train_lm(model, batches: Batches, *, steps: int, batch: int, lr: float = 2e-3,
             checkpoint=None, vision_reset: bool = True) -> list[tuple[float, float]]:
    """AdamW on everything but the VQ; ``checkpoint(step)`` is called every 250 steps.

    With ``vision_reset`` the SigLIP tower and its aligner start from PyTorch's default init: at the
    hub init (std 0.02) their gradients stay too small for the LM to start reading the image.
    """
    if vision_reset:
        _reset(model.model.vision_model)
        _reset(model.model.aligner)
    model.train()
    model.model.vqmodel.eval()
    params = [p for n, p in model.named_parameters() if not n.startswith("model.vqmodel.")]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    losses = []
    started = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * _schedule(step, steps, min(100, steps // 10 + 1))
        lu = und_loss(model, *batches.understanding(batch))
        lg = gen_loss(model, *batches.generation(batch))
        opt.zero_grad(set_to_none=True)
        (lu + lg).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append((lu.item(), lg.item()))
        if step % 50 == 0 or step == steps - 1:
            recent = np.mean(losses[-50:], axis=0)
            log.info("lm step %d/%d  understanding %.3f  generation %.3f  %.0fs", step + 1, steps, recent[0],
                     recent[1], time.perf_counter() - started)
        if checkpoint is not None and step % 250 == 249:
            checkpoint(step + 1)
    model.eval()
    return losses


def save(model, processor, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size="3MB")  # shards: each tracked file stays well under 5 MiB
    processor.save_pretrained(out)


VQ_PREFIX = "model.vqmodel."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m umm.shapes.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("assets/shapes-janus"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vq-steps", type=int, default=1500)
    parser.add_argument("--vq-batch", type=int, default=16)
    parser.add_argument("--lm-steps", type=int, default=600)
    parser.add_argument("--lm-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stage", choices=["all", "vq", "lm"], default="all",
                        help="vq / lm: train one part into --out/parts (the two are independent, so they "
                             "can run in parallel); all: both, then assemble --out")
    parser.add_argument("--hub-init", action="store_true", help="keep the hub init of the vision tower")
    parser.add_argument("--resume", type=Path, default=None,
                        help="lm stage: start from this checkpoint folder's LM weights (a longer run in pieces)")
    parser.add_argument("--no-eval", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    from safetensors.torch import load_file, save_file

    parts = args.out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    if args.stage in ("all", "vq"):
        model, _ = build(args.seed)
        vq = model.model.vqmodel
        train_vq(vq, steps=args.vq_steps, batch=args.vq_batch, seed=args.seed)
        rng = random.Random(args.seed + 7)
        log.info("encoder picks the designed code for %.1f%% of held-out tokens",
                 100 * encoder_accuracy(vq, [world.random_scene(rng, "heldout") for _ in range(32)]))
        save_file({k: v.contiguous() for k, v in vq.state_dict().items()}, parts / "vq.safetensors")
    if args.stage in ("all", "lm"):
        model, processor = build(args.seed)
        torch.manual_seed(args.seed + 1)
        if args.resume is not None:
            shards = sorted(args.resume.glob("model*.safetensors"))
            resumed = {k: v for shard in shards for k, v in load_file(shard).items()}
            model.load_state_dict({k: v for k, v in resumed.items() if not k.startswith(VQ_PREFIX)}, strict=False)
            if not (parts / "vq.safetensors").exists():  # keep the resumed checkpoint's VQ
                vq_state = {k[len(VQ_PREFIX):]: v for k, v in resumed.items() if k.startswith(VQ_PREFIX)}
                save_file(vq_state, parts / "vq.safetensors")

        def keep(step: int | None = None) -> None:
            state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith(VQ_PREFIX)}
            save_file(state, parts / ("lm.safetensors" if step is None else f"lm-{step}.safetensors"))

        train_lm(model, Batches(processor, args.seed + 1), steps=args.lm_steps, batch=args.lm_batch,
                 checkpoint=keep, vision_reset=not (args.hub_init or args.resume))
        keep()
    if not ((parts / "vq.safetensors").exists() and (parts / "lm.safetensors").exists()):
        return
    model, processor = build(args.seed)
    state = load_file(parts / "lm.safetensors")
    state.update({VQ_PREFIX + k: v for k, v in load_file(parts / "vq.safetensors").items()})
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("lm_head" not in k for k in missing), (missing, unexpected)
    save(model.eval(), processor, args.out)
    import shutil

    shutil.rmtree(parts)
    log.info("saved to %s", args.out)
    if not args.no_eval:
        from umm.shapes.evaluate import evaluate_dir

        evaluate_dir(args.out)


if __name__ == "__main__":
    main()
