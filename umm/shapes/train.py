"""Train the shapes Janus model from scratch: VQ tokenizer, vision tower, then the LM on mixed batches.

    python -m umm.shapes.train --out assets/shapes-janus

Deterministic for a given seed and thread count. The VQ stage learns the world's image patches; it
runs in a second process while the LM stage starts. The LM stage first teaches the SigLIP tower and
aligner to write, for each image token, the LM's own embeddings of the words that describe it; then,
with the tower frozen, it trains the Llama, the generation aligner and both heads on mixed batches:
understanding chats (an image and as many questions as fit in 128 tokens, answers learnt) and
generation (caption -> VQ tokens, with caption dropout for classifier-free guidance). Ends with the
evaluation table.
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
REGRESSION_WEIGHT = 5.0  # pulls image features to the sum of their words' embeddings (see train_vision)
MAX_TURNS = 8  # question/answer turns per understanding chat, at most
CHAT_LENGTH = 128  # tokens per understanding chat: turns are added while they fit


def pixels(scenes) -> torch.Tensor:
    """Rendered scenes in the processor's normalisation ([-1, 1], channels first)."""
    array = np.stack([world.render(s) for s in scenes]).astype(np.float32)
    return torch.from_numpy(array / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def _schedule(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _optimise(opt, loss: torch.Tensor, losses: list[float], name: str, step: int, steps: int,
              started: float) -> None:
    """One optimizer step on ``loss``, kept in ``losses`` and logged (mean of the last 50) every 50 steps."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    losses.append(loss.item())
    if step % 50 == 0 or step == steps - 1:
        log.info("%s step %d/%d  loss %.4f  %.0fs", name, step + 1, steps, np.mean(losses[-50:]),
                 time.perf_counter() - started)


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
        _optimise(opt, loss, losses, "vq decoder", step, steps, started)
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
    """Per image token: (colour, shape, size, cell, token index), 0 meaning empty for the first three."""
    cell_of = torch.tensor([(t // GRID // 2) * 3 + (t % GRID) // 2 for t in range(NUM_IMAGE_TOKENS)])
    rows = []
    for scene in scenes:
        per_cell = torch.zeros(9, 3, dtype=torch.long)
        for item in scene:
            per_cell[item.cell] = torch.tensor([1 + list(world.COLOURS).index(item.colour),
                                                1 + world.SHAPES.index(item.shape), 1 + world.SIZES.index(item.size)])
        rows.append(torch.cat([per_cell[cell_of], cell_of[:, None], torch.arange(NUM_IMAGE_TOKENS)[:, None]], dim=1))
    return torch.cat(rows)


def word_vectors(model, tokenizer) -> list[torch.Tensor]:
    """Per attribute, one row per class: the sum of the LM's input embeddings of the words that name it.

    Classes follow ``_attributes``: "nothing" then the colours (shapes, sizes); the nine grid cells
    by their phrase ("top left" is the sum of " top" and " left").
    """
    table = model.get_input_embeddings().weight.detach()

    def rows(phrases) -> torch.Tensor:
        return torch.stack([table[tokenizer(" " + p, add_special_tokens=False)["input_ids"]].sum(0) for p in phrases])

    return [rows(["nothing", *names]) for names in (world.COLOURS, world.SHAPES, world.SIZES)] + [rows(world.POSITIONS)]


def train_vision(model, tokenizer, *, steps: int, batch: int, seed: int, lr: float = 3e-3) -> list[float]:
    """Teach the SigLIP tower and its aligner to write, for each image token, the words that describe it.

    The probes are the LM's own word embeddings: a red circle's tokens are classified, by cosine
    similarity, as the embeddings of " red", " circle", its size and its cell's words, and pulled
    towards their sum. An image token then looks like the words a question uses, so the LM finds
    "the square" in the image with the attention that matches equal tokens, and copies its colour
    out the way it copies a word. With free linear probes instead, understanding-only training found
    items less often after 1000 LM steps than with these probes after 500. The pull to the sum keeps
    the four parts equally strong (cosine about 0.45 each): by classification alone the tower wrote
    colour, which single pixels show, twice as strongly as shape, which needs the whole cell. With
    the question mix of ``world.QUESTION_MIX`` this warm-up (1200 steps) clearly beat classification
    alone (300 steps). A throw-away probe reads the token index (which quarter of the cell).

    The LM's word embeddings are first drawn from N(0, 1), like ``nn.Embedding``'s default: at the
    hub's std 0.02 the LM's optimizer moves them away from the image features within a few steps.
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    janus = model.model
    _reset(janus.vision_model)
    _reset(janus.aligner)
    # N(0, 1) too: at the hub's std 0.02 the places are a rounding error next to the patch contents.
    janus.vision_model.embeddings.position_embedding.reset_parameters()
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, 1.0)
    words = word_vectors(model, tokenizer)
    units = [F.normalize(w, dim=-1) for w in words]
    index_probe = torch.nn.Linear(model.config.text_config.hidden_size, NUM_IMAGE_TOKENS)
    scale = torch.nn.Parameter(torch.tensor(10.0))
    params = [*janus.vision_model.parameters(), *janus.aligner.parameters(), *index_probe.parameters(), scale]
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
        cosine = F.normalize(features, dim=-1) * scale
        loss = sum(F.cross_entropy(cosine @ u.T, targets[:, k]) for k, u in enumerate(units))
        loss = loss + F.cross_entropy(index_probe(features), targets[:, 4])
        target = sum(w[targets[:, k]] for k, w in enumerate(words))
        loss = loss + REGRESSION_WEIGHT * F.mse_loss(features, target) / target.pow(2).mean()
        _optimise(opt, loss, losses, "vision", step, steps, started)
    janus.vision_model.eval()
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

    def understanding(self, size: int, length: int = CHAT_LENGTH):
        """Chats about one image each: as many question/answer turns as fit in ``length`` tokens.

        Later turns reuse the image's tokens, so one forward pass teaches several answers, and rows of
        equal length waste no compute on padding. The first turn of every chat is the single-question
        prompt the evaluation (and most users) ask.
        """
        scenes = [world.random_scene(self.rng) for _ in range(size)]
        image = f"{IMAGE_SPECIALS['boi_token']}{IMAGE_SPECIALS['image_token'] * NUM_IMAGE_TOKENS}" \
                f"{IMAGE_SPECIALS['eoi_token']}\n"
        rows, targets = [], []
        for scene in scenes:
            row, target, asked = [self.bos], [-100], set()
            for _ in range(4 * MAX_TURNS):
                q = world.random_question(scene, self.rng)
                if q.text in asked:
                    continue
                prompt, answer = self._ids([f"<|User|>: {image if not asked else ''}{q.text}\n\n<|Assistant|>:",
                                            f" {q.answer}"])
                if asked and len(row) + len(prompt) + len(answer) + 1 > length:
                    break
                asked.add(q.text)
                row += [*prompt, *answer, self.eos]
                target += [-100] * len(prompt) + [*answer, self.eos]
                if len(asked) == MAX_TURNS:
                    break
            rows.append(row)
            targets.append(target)
        width = max(map(len, rows))
        ids = torch.full((size, width), self.pad)
        labels = torch.full((size, width), -100)
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
             on_step=None) -> list[tuple[float, float]]:
    """AdamW on the LM, its heads and the generation aligner; ``on_step(n)`` is called after each step n.

    The VQ and the warmed-up vision tower with its aligner stay frozen: the tower's word-like
    features are what the LM learns to match, and training it along measurably slowed understanding
    (and costs a backward pass through it).
    """
    model.train()
    frozen = (VQ_PREFIX, "model.vision_model.", "model.aligner.")
    for name, module in model.named_modules():
        if f"{name}.".startswith(frozen):
            module.eval()
    for n, p in model.named_parameters():
        p.requires_grad_(not n.startswith(frozen))
    params = [p for p in model.parameters() if p.requires_grad]
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
        if on_step is not None:
            on_step(step + 1)
    model.eval()
    return losses


def save(model, processor, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size="3MB")  # shards: each tracked file stays well under 5 MiB
    processor.save_pretrained(out)


VQ_PREFIX = "model.vqmodel."


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


def vq_stage(parts: Path, *, seed: int, steps: int, batch: int, threads: int) -> None:
    """Train the VQ into ``parts/vq.safetensors`` (a top-level function: ``--stage all`` spawns it)."""
    from safetensors.torch import save_file

    _setup_logging()
    torch.set_num_threads(threads)
    model, _ = build(seed)
    vq = model.model.vqmodel
    train_vq(vq, steps=steps, batch=batch, seed=seed)
    rng = random.Random(seed + 7)
    log.info("encoder picks the designed code for %.1f%% of held-out tokens",
             100 * encoder_accuracy(vq, [world.random_scene(rng, "heldout") for _ in range(32)]))
    save_file({k: v.contiguous() for k, v in vq.state_dict().items()}, parts / "vq.safetensors")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m umm.shapes.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("assets/shapes-janus"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vq-steps", type=int, default=2500)
    parser.add_argument("--vq-batch", type=int, default=16)
    parser.add_argument("--vision-steps", type=int, default=1200)
    parser.add_argument("--lm-steps", type=int, default=3000)
    parser.add_argument("--lm-batch", type=int, default=32, help="generation captions per LM step")
    parser.add_argument("--und-batch", type=int, default=None,
                        help="understanding chats per LM step (default: --lm-batch)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--join-step", type=int, default=400,
                        help="stage all with 2+ threads: the VQ trains in a second process on one thread while "
                             "the LM uses the rest; at this LM step the LM waits for it, then takes every thread")
    parser.add_argument("--stage", choices=["all", "vq", "lm"], default="all",
                        help="vq / lm: train one part into --out/parts; all: both (in parallel), then "
                             "assemble --out")
    parser.add_argument("--resume", type=Path, default=None,
                        help="lm stage: start from this checkpoint folder's LM weights (a longer run in pieces)")
    parser.add_argument("--no-eval", action="store_true")
    args = parser.parse_args(argv)
    _setup_logging()
    from safetensors.torch import load_file, save_file

    started = time.perf_counter()
    parts = args.out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    vq_kwargs = {"seed": args.seed, "steps": args.vq_steps, "batch": args.vq_batch}
    vq_process = None
    lm_threads = args.threads
    if args.stage == "vq" or (args.stage == "all" and args.threads < 2):
        vq_stage(parts, threads=args.threads, **vq_kwargs)
    elif args.stage == "all":
        import multiprocessing

        vq_process = multiprocessing.get_context("spawn").Process(
            target=vq_stage, args=(parts,), kwargs={"threads": 1, **vq_kwargs}, name="umm-shapes-vq")
        vq_process.start()
        lm_threads = args.threads - 1
    if args.stage in ("all", "lm"):
        torch.set_num_threads(lm_threads)
        model, processor = build(args.seed)
        torch.manual_seed(args.seed + 1)
        if args.resume is not None:
            shards = sorted(args.resume.glob("model*.safetensors"))
            resumed = {k: v for shard in shards for k, v in load_file(shard).items()}
            model.load_state_dict({k: v for k, v in resumed.items() if not k.startswith(VQ_PREFIX)}, strict=False)
            if not (parts / "vq.safetensors").exists():  # keep the resumed checkpoint's VQ
                vq_state = {k[len(VQ_PREFIX):]: v for k, v in resumed.items() if k.startswith(VQ_PREFIX)}
                save_file(vq_state, parts / "vq.safetensors")

        def after_step(step: int) -> None:
            if step % 250 == 0:
                state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith(VQ_PREFIX)}
                save_file(state, parts / f"lm-{step}.safetensors")
            if vq_process is not None and step == min(args.join_step, args.lm_steps):
                join_vq(vq_process)
                torch.set_num_threads(args.threads)
                log.info("the VQ is done; the LM now uses %d threads", args.threads)

        if args.resume is None:
            train_vision(model, processor.tokenizer, steps=args.vision_steps, batch=args.lm_batch,
                         seed=args.seed + 2)
        train_lm(model, Batches(processor, args.seed + 1), steps=args.lm_steps, batch=args.lm_batch,
                 und_batch=args.und_batch, on_step=after_step)
        save_file({k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith(VQ_PREFIX)},
                  parts / "lm.safetensors")
    if vq_process is not None:
        join_vq(vq_process)
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
    log.info("saved to %s after %.1f min", args.out, (time.perf_counter() - started) / 60)
    if not args.no_eval:
        from umm.shapes.evaluate import evaluate_dir

        evaluate_dir(args.out)
        log.info("trained and evaluated in %.1f min", (time.perf_counter() - started) / 60)


def join_vq(process) -> None:
    process.join()  # returns at once when already joined
    if process.exitcode != 0:
        raise SystemExit(f"the VQ stage failed (exit code {process.exitcode})")


if __name__ == "__main__":
    main()
