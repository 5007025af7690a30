"""What notebook 05's hook points cost: a forward pass of HookedDemoTransformer against
FusedTransformer (the same weights, the same fused kernels, no hook points), with nothing attached,
and what recording activations costs.

Forward only, without gradients, at small sizes, where the fixed cost per call of the ~20 hook
points per block weighs most (the training step, where it weighs least, is in bench_train_step.py
--hooked). Interleaved rounds, median time. Ratio = the fused twin's time / this one's (1: no cost).

    # CPU, float32: the ci and cpu shapes and GPT-2 small, one short sequence each
    python bench/bench_hooks.py
    python bench/bench_hooks.py --rounds 200 --posn 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from utils.configs import CONFIGS
from utils.fused import FusedTransformer
from utils.hooks import HookedDemoTransformer
from utils.model import Config

from timing import interleaved_times  # bench/timing.py

SHAPES = {
    "ci": Config(**CONFIGS["ci"].model, d_vocab=CONFIGS["ci"].bpe_vocab_size),
    "cpu": Config(**CONFIGS["cpu"].model, d_vocab=CONFIGS["cpu"].bpe_vocab_size),
    "gpt2": Config(),
}


def bench_shape(name: str, cfg: Config, posn: int, rounds: int) -> None:
    torch.manual_seed(0)
    fused = FusedTransformer(cfg).eval()
    hooked = HookedDemoTransformer.from_model(fused).eval()
    tokens = torch.randint(0, cfg.d_vocab, (1, posn), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if (hooked(tokens) - fused(tokens)).abs().max() > 1e-4:
            raise SystemExit("the hooked model's logits differ from the fused twin's")
        runs = {
            "fused twin (no hook points)": lambda: fused(tokens),
            "hooked, nothing attached": lambda: hooked(tokens),
            "hooked, run_with_cache (q, z, resid)": lambda: hooked.run_with_cache(
                tokens, names_filter=lambda n: n.endswith(("hook_q", "hook_z", "hook_resid_post"))
            ),
            "hooked, run_with_cache (everything)": lambda: hooked.run_with_cache(tokens),
        }
        for run in runs.values():  # warm-up
            run()
        times = interleaved_times(runs, rounds)
    medians = {label: statistics.median(t) for label, t in times.items()}
    base = medians["fused twin (no hook points)"]
    print(
        f"\n{name}: d_model={cfg.d_model} n_layers={cfg.n_layers} d_vocab={cfg.d_vocab}, 1 x "
        f"{posn} tokens, forward without gradients, {torch.get_num_threads()} CPU threads, median "
        f"of {rounds}, {len(hooked.hook_points())} hook points"
    )
    for label, t in medians.items():
        print(f"  {label:<38} {t * 1e3:8.3f} ms   fused / this = {base / t:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--posn", type=int, default=32, help="tokens in the one sequence")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    print(f"torch {torch.__version__}")
    for name in args.shapes:
        bench_shape(name, SHAPES[name], args.posn, args.rounds)


if __name__ == "__main__":
    main()
