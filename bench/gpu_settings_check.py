"""On a real GPU: do the `gpu` config's choices hold? Optionally pretend to be a smaller GPU (a T4:
float16, 15 GB).

Caps this process's GPU memory (torch.cuda.set_per_process_memory_fraction), lets
utils.gpu.choose_settings pick precision and micro-batch for GPT-2 small, runs a few trainer steps
with them, and prints the measured peak memory next to the estimate. Then it tries the whole batch
in one micro-batch, to show whether accumulating was needed.
    python bench/gpu_settings_check.py                           # this GPU as it is
    python bench/gpu_settings_check.py --dtype float16 --memory-gb 15   # a T4 stand-in
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from utils.fused import FusedTransformer
from utils.gpu import GiB, choose_settings, describe_gpu, training_memory
from utils.model import Config
from utils.gpu import model_flops_per_token
from utils.safe_training import SafeTrainer as Trainer  # notebook 03's trainer, as it trains
from utils.training import TrainingArgs


def run_steps(cfg, settings, batch_size, steps):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    data = torch.randint(0, cfg.d_vocab, (batch_size * 2, cfg.n_ctx))
    args = TrainingArgs(
        batch_size=batch_size,
        max_steps=steps,
        checkpoint_dir=tempfile.mkdtemp(),
        **settings.training_args(),
    )
    trainer = Trainer(FusedTransformer(cfg), args, data, data)
    batch = data[:batch_size].to("cuda")
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        losses.append(float(trainer.training_step(batch)))
        trainer.step += 1
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / GiB
    del trainer
    return losses, peak, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--dtype", choices=["bfloat16", "float16"], default=None)
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        help="cap this process's GPU memory (GB, 1e9 bytes)",
    )
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    if args.memory_gb:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(args.memory_gb * 1e9 / total)
    cfg = Config(d_vocab=50304)
    gpu = describe_gpu()
    settings = choose_settings(
        gpu,
        cfg,
        batch_size=16,
        max_steps=64,
        flops_per_token=model_flops_per_token(cfg),
        dtype=args.dtype,
    )
    print(settings.describe())
    losses, peak, seconds = run_steps(cfg, settings, 16, args.steps)
    estimate = training_memory(cfg, settings.micro_batch_size, settings.autocast) / GiB
    print(
        f"chosen: {settings.accumulation} x {settings.micro_batch_size} sequences, "
        f"{settings.autocast}: losses {[round(x, 3) for x in losses]}, {seconds * 1e3:.0f} "
        f"ms/step, peak {peak:.1f} GiB (estimate {estimate:.1f} GiB, free "
        f"{gpu.free_memory / GiB:.1f} GiB)"
    )
    assert all(map(lambda x: x == x and x < 20, losses)), "losses must be finite"
    if settings.micro_batch_size < 16:
        whole = replace(settings, micro_batch_size=16, accumulation=1)
        try:
            _, peak16, _ = run_steps(cfg, whole, 16, 1)
            print(
                f"the whole batch of 16 in one micro-batch also ran: peak {peak16:.1f} GiB (the "
                "estimate was cautious)"
            )
        except torch.OutOfMemoryError:
            print(
                "the whole batch of 16 in one micro-batch ran out of memory: accumulating was "
                "needed"
            )


if __name__ == "__main__":
    main()
