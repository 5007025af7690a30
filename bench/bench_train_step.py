"""Time a training step (forward, backward, AdamW) of our model against Hugging Face's GPT2LMHeadModel at the same shape.

Same process, same batch, interleaved runs; prints median step times and the ratio HF / ours (> 1 means ours is faster).
    python bench/bench_train_step.py                  # CPU, float32: ci, cpu and GPT-2-small shapes
    python bench/bench_train_step.py --device cuda --bf16 --shapes gpt2 --batch 16 --seq 1024
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from utils.configs import CONFIGS
from utils.model import Config, DemoTransformer, next_token_loss
from utils.resources import new_gpt2
from utils.training import model_flops_per_token, peak_flops

SHAPES = {
    "ci": Config(**CONFIGS["ci"].model, d_vocab=CONFIGS["ci"].bpe_vocab_size),
    "cpu": Config(**CONFIGS["cpu"].model, d_vocab=CONFIGS["cpu"].bpe_vocab_size),
    "gpt2": Config(),
}


def make_step(model, forward, device, bf16, fused):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused or None)

    def step(tokens):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = next_token_loss(forward(tokens), tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def bench_shape(name, cfg, batch, seq, device, bf16, rounds, compile_):
    torch.manual_seed(0)
    cfg = replace(cfg, n_ctx=max(cfg.n_ctx, seq))
    if device == "cuda":  # as in the gpu config: 50257 -> 50304, matmul shapes that are multiples of 64 run faster
        cfg = replace(cfg, d_vocab=-(-cfg.d_vocab // 64) * 64)
    tokens = torch.randint(0, cfg.d_vocab, (batch, seq), device=device)
    hf = new_gpt2(cfg, tie_word_embeddings=False).train().to(device)  # untied: same parameter count as ours
    models = {"HF GPT2LMHeadModel": make_step(hf, lambda t: hf(t).logits, device, bf16, device == "cuda")}
    for impl in ("fast", "explicit"):
        ours = DemoTransformer(replace(cfg, attn_impl=impl)).to(device)
        forward = torch.compile(ours) if compile_ else ours
        models[f"ours ({impl})"] = make_step(ours, forward, device, bf16, device == "cuda")
    times = {k: [] for k in models}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for r in range(rounds + 2):  # two warm-up rounds
        for label, step in models.items():  # interleaved, so drift affects every model alike
            sync()
            start = time.perf_counter()
            step(tokens)
            sync()
            if r >= 2:
                times[label].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in times.items()}
    hf_time = medians["HF GPT2LMHeadModel"]
    print(f"\n{name}: d_model={cfg.d_model} n_layers={cfg.n_layers} d_vocab={cfg.d_vocab}, batch {batch} x seq {seq}, "
          f"{device}{' bf16' if bf16 else ' float32'}{' compiled' if compile_ else ''}, median of {rounds}")
    peak = peak_flops(device) if bf16 else None
    for label, t in medians.items():
        line = f"  {label:<22} {t * 1e3:9.1f} ms/step  {batch * seq / t:>10,.0f} tok/s  HF/this = {hf_time / t:.2f}"
        if peak:
            flops = model_flops_per_token(replace(cfg, n_ctx=seq)) * batch * seq
            line += f"  MFU {flops / t / peak:.1%}"
        print(line)
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""))
    defaults = {"ci": (16, 64), "cpu": (32, 128), "gpt2": (2, 128)}
    for name in args.shapes:
        batch, seq = defaults[name]
        bench_shape(name, SHAPES[name], args.batch or batch, args.seq or seq, args.device, args.bf16, args.rounds, args.compile)


if __name__ == "__main__":
    main()
