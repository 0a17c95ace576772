"""Train the shapes Janus model from scratch: VQ tokenizer, vision tower, then the LM on mixed batches.

    python -m umm.shapes.train --out assets/shapes-janus

Deterministic for a given seed and thread count. The VQ stage learns the world's image patches.
The LM stage first teaches the SigLIP tower and aligner, through throw-away linear probes, what each
patch shows and where it is; then it trains the tower, aligners, Llama and generation head on
understanding chats (image + 1-4 questions -> answers) and generation (caption -> VQ tokens, with
caption dropout for classifier-free guidance) batches, with the VQ frozen. Ends with the evaluation
table.
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
from umm.shapes.model import IMAGE_SPECIALS, NUM_IMAGE_TOKENS, PATCH, build

log = logging.getLogger("umm.shapes.train")
GRID = world.IMAGE_SIZE // PATCH  # image tokens per side (a grid cell is 2x2 tokens)
UNCOND_RATE = 0.2  # captions dropped to train the unconditional branch of CFG (a fifth: it gets few steps)
MAX_TURNS = 4  # question/answer turns per understanding chat


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
# one (colour, shape, size) variant, or background. The tokenizer gets one code per patch instead of
# discovering them by clustering, which on a CPU takes far longer; background has one code per
# token position. Those codes all draw the same empty patch, but while the LM writes an image they
# tell it where it is: a Llama with RoPE otherwise has to count its way from the begin-of-image
# token to know which grid cell, hence which part of the caption, the next token belongs to.
VARIANTS = [(c, s, z) for c in world.COLOURS for s in world.SHAPES for z in world.SIZES]
NUM_CODES = NUM_IMAGE_TOKENS + 4 * len(VARIANTS)


def scene_codes(scene) -> torch.Tensor:
    """The scene's 36 VQ codes in raster order."""
    grid = torch.arange(NUM_IMAGE_TOKENS).view(GRID, GRID)  # background at each position
    for item in scene:
        row, col = divmod(item.cell, 3)
        variant = VARIANTS.index((item.colour, item.shape, item.size))
        for quarter in range(4):
            grid[2 * row + quarter // 2, 2 * col + quarter % 2] = NUM_IMAGE_TOKENS + 4 * variant + quarter
    return grid.flatten()


def is_background(codes: torch.Tensor) -> torch.Tensor:
    return codes < NUM_IMAGE_TOKENS


def weight(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss weights: shapes and a thin margin around them count ten times the background.

    Shapes cover a tenth of an image but are all that matters; the margin keeps the decoder from
    rounding off corners, which costs it little when only the shape's own pixels weigh.
    """
    background = torch.tensor(world.BACKGROUND, dtype=x.dtype).view(1, 3, 1, 1) / 127.5 - 1.0
    shape = ((x - background).abs().sum(1, keepdim=True) > 0.05).to(x.dtype)
    return 1.0 + 9.0 * F.max_pool2d(shape, kernel_size=5, stride=1, padding=2)


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
    """How often the hub ``encode`` reads a token's patch right: its designed code, or any background code.

    (Background codes differ only in the position they stand for, which a convolution barely sees.)
    """
    with torch.no_grad():
        tokens = vq.encode(pixels(scenes)).image_tokens.view(len(scenes), -1)
    codes = torch.stack([scene_codes(s) for s in scenes])
    return ((tokens == codes) | (is_background(tokens) & is_background(codes))).float().mean().item()


# -- vision tower -----------------------------------------------------------------------------
def _attributes(scenes) -> torch.Tensor:
    """Per image token: (colour, shape, size, token index), 0 meaning empty for the first three."""
    cell_of = torch.tensor([(t // GRID // 2) * 3 + (t % GRID) // 2 for t in range(NUM_IMAGE_TOKENS)])
    rows = []
    for scene in scenes:
        per_cell = torch.zeros(9, 3, dtype=torch.long)
        for item in scene:
            per_cell[item.cell] = torch.tensor([1 + list(world.COLOURS).index(item.colour),
                                                1 + world.SHAPES.index(item.shape), 1 + world.SIZES.index(item.size)])
        rows.append(torch.cat([per_cell[cell_of], torch.arange(NUM_IMAGE_TOKENS)[:, None]], dim=1))
    return torch.cat(rows)


def train_vision(model, *, steps: int, batch: int, seed: int, lr: float = 3e-3) -> list[float]:
    """Teach the SigLIP tower and its aligner what each cell holds and where it is.

    Throw-away linear probes read every image feature: its colour, shape, size (or empty) and grid
    position, each on its own, so the features the LM receives are a sum of separate directions
    that a single attention head can match ("the circle") and read ("its colour"). Without this
    the LM sits for thousands of steps on the answer prior before it starts to read the image.
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    janus = model.model
    _reset(janus.vision_model)
    _reset(janus.aligner)
    # N(0, 1) like nn.Embedding's default: at the hub's std 0.02 the places are a rounding error next
    # to the patch contents, and the tower takes hundreds of steps to tell its tokens apart.
    janus.vision_model.embeddings.position_embedding.reset_parameters()
    hidden = model.config.text_config.hidden_size
    classes = (1 + len(world.COLOURS), 1 + len(world.SHAPES), 1 + len(world.SIZES), NUM_IMAGE_TOKENS)
    probes = torch.nn.ModuleList(torch.nn.Linear(hidden, n) for n in classes)
    params = [*janus.vision_model.parameters(), *janus.aligner.parameters(), *probes.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    janus.vision_model.train()
    losses = []
    started = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * _schedule(step, steps, min(20, steps // 5 + 1))
        scenes = [world.random_scene(rng) for _ in range(batch)]
        features = janus.get_image_features(pixels(scenes)).pooler_output.flatten(0, 1)
        targets = _attributes(scenes)
        loss = sum(F.cross_entropy(probe(features), targets[:, k]) for k, probe in enumerate(probes))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log.info("vision step %d/%d  loss %.4f  %.0fs", step + 1, steps, np.mean(losses[-50:]),
                     time.perf_counter() - started)
    return losses


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

    def understanding(self, size: int, max_turns: int = MAX_TURNS):
        """Chats about one image each: 1 to ``max_turns`` question/answer turns, every answer learnt.

        Later turns reuse the image's tokens, so one forward pass teaches several answers.
        """
        scenes = [world.random_scene(self.rng) for _ in range(size)]
        image = f"{IMAGE_SPECIALS['boi_token']}{IMAGE_SPECIALS['image_token'] * NUM_IMAGE_TOKENS}" \
                f"{IMAGE_SPECIALS['eoi_token']}\n"
        rows, targets = [], []
        for scene in scenes:
            row, target = [self.bos], [-100]
            for turn in range(self.rng.randint(1, max_turns)):
                q = world.random_question(scene, self.rng)
                prompt, answer = self._ids([f"<|User|>: {image if turn == 0 else ''}{q.text}\n\n<|Assistant|>:",
                                            f" {q.answer}"])
                row += [*prompt, *answer, self.eos]
                target += [-100] * len(prompt) + [*answer, self.eos]
            rows.append(row)
            targets.append(target)
        length = max(map(len, rows))
        ids = torch.full((size, length), self.pad)
        labels = torch.full((size, length), -100)
        for i, (row, target) in enumerate(zip(rows, targets, strict=True)):
            ids[i, : len(row)] = torch.tensor(row)
            labels[i, : len(row)] = torch.tensor(target)
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


def train_lm(model, batches: Batches, *, steps: int, batch: int, lr: float = 2e-3, und_batch: int | None = None,
             checkpoint=None) -> list[tuple[float, float]]:
    """AdamW on everything but the VQ; ``checkpoint(step)`` is called every 250 steps."""
    model.train()
    model.model.vqmodel.eval()
    params = [p for n, p in model.named_parameters() if not n.startswith("model.vqmodel.")]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    losses = []
    started = time.perf_counter()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * _schedule(step, steps, min(100, steps // 10 + 1))
        lu = und_loss(model, *batches.understanding(und_batch or batch))
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
    parser.add_argument("--vq-steps", type=int, default=2500)
    parser.add_argument("--vq-batch", type=int, default=16)
    parser.add_argument("--vision-steps", type=int, default=300)
    parser.add_argument("--lm-steps", type=int, default=3000)
    parser.add_argument("--lm-batch", type=int, default=32, help="generation captions per LM step")
    parser.add_argument("--und-batch", type=int, default=None,
                        help="understanding chats per LM step (default: --lm-batch)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stage", choices=["all", "vq", "lm"], default="all",
                        help="vq / lm: train one part into --out/parts (the two are independent, so they "
                             "can run in parallel); all: both, then assemble --out")
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

        if args.resume is None:
            train_vision(model, steps=args.vision_steps, batch=args.lm_batch, seed=args.seed + 2)
        train_lm(model, Batches(processor, args.seed + 1), steps=args.lm_steps, batch=args.lm_batch,
                 und_batch=args.und_batch, checkpoint=keep)
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
