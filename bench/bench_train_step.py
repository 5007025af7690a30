r"""Time one training step (forward, backward, clip, AdamW) of our model against its peers at the
same shape, in one process.

Ours runs through the trainer's own step (`Trainer.training_step`: FusedTransformer, the loss
compiled with the model when --compile), so the figure is what learners get. Peers: Hugging Face's
GPT2LMHeadModel (untied, so the same parameter count, eager, as it is usually run), and, with
--peer PATH, nanoGPT's model.py trained as nanoGPT trains it (compiled with --compile, the loss
inside the model, separate contiguous inputs and targets, fused AdamW on a GPU, gradient clipping at
1.0). Interleaved rounds, median step time; each line's ratio is the fastest peer's time over its
own (above 1: faster than every peer).

    # CPU, float32: ci, cpu, GPT-2-small shapes
    python bench/bench_train_step.py --peer ../shared/peers/nanogpt_model.py
    # also notebook 05's hooked model, nothing attached
    python bench/bench_train_step.py --peer ../shared/peers/nanogpt_model.py --hooked
    python bench/bench_train_step.py --peer PATH --device cuda --compile --shapes gpt2 \
        --batch 16 --seq 1024 --explicit
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from utils.configs import CONFIGS
from utils.fused import FusedTransformer
from utils.hooks import HookedDemoTransformer
from utils.gpu import GiB, padded_vocab_size, peak_flops, training_memory
from utils.model import Config, DemoTransformer, next_token_loss
from utils.resources import new_gpt2
from utils.gpu import model_flops_per_token
from utils.safe_training import SafeTrainer as Trainer  # notebook 03's trainer, as it trains
from utils.training import TrainingArgs

from timing import interleaved_step_times, paired_spread  # bench/timing.py

SHAPES = {
    "ci": (Config(**CONFIGS["ci"].model, d_vocab=CONFIGS["ci"].bpe_vocab_size), 16, 64),
    "cpu": (Config(**CONFIGS["cpu"].model, d_vocab=CONFIGS["cpu"].bpe_vocab_size), 32, 128),
    "gpt2": (Config(), 2, 128),
}


def load_peer(path: str):
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_step(model, optimizer, dtype, loss_fn):
    """A peer's training step as it is usually written: autocast forward, backward, clip at 1.0,
    AdamW, clear the gradients."""

    def step():
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def hf_step(cfg, device, dtype, tokens):
    model = new_gpt2(cfg, tie_word_embeddings=False).train().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda" or None)
    return peer_step(model, optimizer, dtype, lambda: next_token_loss(model(tokens).logits, tokens))


def nanogpt_step(peer, cfg, device, dtype, compile_, batch, seq):
    model = peer.GPT(
        peer.GPTConfig(
            block_size=seq,
            vocab_size=cfg.d_vocab,
            n_layer=cfg.n_layers,
            n_head=cfg.n_heads,
            n_embd=cfg.d_model,
            dropout=0.0,
            bias=True,
        )
    ).to(device)
    optimizer = model.configure_optimizers(
        weight_decay=0.1, learning_rate=1e-4, betas=(0.9, 0.95), device_type=device
    )
    forward = torch.compile(model) if compile_ else model
    data = torch.randint(0, cfg.d_vocab, (batch, seq + 1), device=device)
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    return peer_step(model, optimizer, dtype, lambda: forward(x, y)[1])


def ours_step(model_class, cfg, device, dtype_name, compile_, tokens, checkpoint_dir):
    args = TrainingArgs(
        batch_size=len(tokens),
        device=device,
        autocast=dtype_name,
        compile=compile_,
        checkpoint_dir=checkpoint_dir,
    )
    trainer = Trainer(model_class(cfg), args, tokens.cpu(), tokens.cpu())
    return lambda: trainer.training_step(tokens)


def bench_shape(
    name, cfg, batch, seq, device, bf16, rounds, compile_, peer, explicit, hf=True, hooked=False
):
    torch.manual_seed(0)
    cfg = replace(cfg, n_ctx=seq)
    if (
        device == "cuda"
    ):  # as in the gpu config: 50257 -> 50304, matmul shapes that are multiples of 64 run faster
        cfg = replace(cfg, d_vocab=padded_vocab_size(cfg.d_vocab))
    dtype_name = "bfloat16" if bf16 else None
    dtype = torch.bfloat16 if bf16 else None
    tokens = torch.randint(0, cfg.d_vocab, (batch, seq), device=device)
    checkpoint_dir = tempfile.mkdtemp(
        prefix="bench_"
    )  # the trainer never saves here (no train() call); no learner folder touched
    steps = {"HF GPT2LMHeadModel (eager)": hf_step(cfg, device, dtype, tokens)} if hf else {}
    if peer:
        steps[f"nanoGPT{' (compiled)' if compile_ else ''}"] = nanogpt_step(
            peer, cfg, device, dtype, compile_, batch, seq
        )
    peers = list(steps)
    if not peers:
        raise SystemExit("no peer to compare with: give --peer PATH or leave out --skip-hf")
    steps[f"ours: trainer step, fused{' (compiled)' if compile_ else ''}"] = ours_step(
        FusedTransformer, cfg, device, dtype_name, compile_, tokens, checkpoint_dir
    )
    # notebook 05's model, with nothing attached to its hook points:
    # should cost what the fused twin costs
    if hooked:
        steps[f"ours: trainer step, hooked{' (compiled)' if compile_ else ''}"] = ours_step(
            HookedDemoTransformer, cfg, device, dtype_name, compile_, tokens, checkpoint_dir
        )
    if explicit:
        steps[f"ours: trainer step, explicit{' (compiled)' if compile_ else ''}"] = ours_step(
            DemoTransformer, cfg, device, dtype_name, compile_, tokens, checkpoint_dir
        )
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    peak_memory = {}
    for label, step in steps.items():  # warm-up (compiles), and each one's peak memory on its own
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        step()
        step()
        sync()
        warmup = time.perf_counter() - start
        if device == "cuda":
            peak_memory[label] = torch.cuda.max_memory_allocated() / GiB
        print(f"  warm-up {label}: {warmup:.1f} s", flush=True)
    times, repeat = interleaved_step_times(steps, rounds, sync)
    medians = {k: statistics.median(v) for k, v in times.items()}
    fastest_label = min(peers, key=medians.get)
    fastest_peer = medians[fastest_label]
    print(
        f"\n{name}: d_model={cfg.d_model} n_layers={cfg.n_layers} d_vocab={cfg.d_vocab}, batch "
        f"{batch} x seq {seq}, {device}{' bf16 autocast' if bf16 else ' float32'}, "
        f"{torch.get_num_threads()} CPU threads, median of {rounds} rounds of {repeat} step(s)"
    )
    peak = (
        peak_flops(torch.cuda.get_device_name(), "bfloat16") if device == "cuda" and bf16 else None
    )
    flops = model_flops_per_token(cfg) * batch * seq
    for label, t in medians.items():
        line = (
            f"  {label:<38} {t * 1e3:9.2f} ms/step {batch * seq / t:>11,.0f} tok/s   fastest peer "
            f"/ this = {fastest_peer / t:.2f}"
        )
        if label != fastest_label and rounds >= 4:
            line += f" ({paired_spread(times[fastest_label], times[label])})"
        if peak:
            line += f"   MFU {flops / t / peak:.1%}"
        if label in peak_memory:
            line += f"   peak {peak_memory[label]:.1f} GiB"
        print(line, flush=True)
    if hooked:
        fused, with_hooks = (
            next(t for k, t in medians.items() if k.startswith(f"ours: trainer step, {kind}"))
            for kind in ("fused", "hooked")
        )
        print(
            f"  hook points, nothing attached: hooked / fused step time = {with_hooks / fused:.3f}"
        )
    if device == "cuda":
        print(
            f"  utils.gpu.training_memory estimate for ours at micro-batch {batch}: "
            f"{training_memory(cfg, batch, dtype_name) / GiB:.1f} GiB"
        )
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile ours (the whole loss) and nanoGPT, as each trains",
    )
    parser.add_argument(
        "--peer", help="path to nanoGPT's model.py (for example ../shared/peers/nanogpt_model.py)"
    )
    parser.add_argument(
        "--explicit",
        action="store_true",
        help="also time the explicit model (notebook 02's classes)",
    )
    parser.add_argument(
        "--hooked",
        action="store_true",
        help="also time notebook 05's HookedDemoTransformer with no hook attached",
    )
    parser.add_argument(
        "--skip-hf",
        action="store_true",
        help="leave Hugging Face's model out (saves memory at large batches)",
    )
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peer = load_peer(args.peer) if args.peer else None
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else "")
        + (f", peer {args.peer}" if peer else "")
    )
    for name in args.shapes:
        cfg, batch, seq = SHAPES[name]
        bench_shape(
            name,
            cfg,
            args.batch or batch,
            args.seq or seq,
            args.device,
            args.bf16,
            args.rounds,
            args.compile,
            peer,
            args.explicit,
            hf=not args.skip_hf,
            hooked=args.hooked,
        )


if __name__ == "__main__":
    main()
