"""Tokens per second of cached greedy generation: ours (utils.sampling.generate) against Hugging
Face's `generate` with its cache.

Same random weights (a GPT2LMHeadModel of the shape, loaded into our models with load_gpt2_weights),
same prompt, same process, interleaved rounds, median time per run; each run generates the same
number of new tokens from the same prompt (the outputs are checked to be identical). Ours runs both
models: the fused twin (FusedTransformer, what the trainer trains) and notebook 02's explicit
classes (DemoTransformer, whose cached attention notebook 04 has the learner write). Ratio = HF's
time / ours (above 1: ours is faster).

    python bench/bench_generate.py  # CPU, float32: the `cpu` config's shape and GPT-2 small
    python bench/bench_generate.py --shapes cpu --new-tokens 100 --rounds 9
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
from utils.model import Config, DemoTransformer, load_gpt2_weights
from utils.resources import new_gpt2
from utils.sampling import generate

from timing import interleaved_times  # bench/timing.py

SHAPES = {  # (config, new tokens per run): both stay within n_ctx, where the cache pays off
    "cpu": (Config(**CONFIGS["cpu"].model, d_vocab=CONFIGS["cpu"].bpe_vocab_size), 100),
    "gpt2": (Config(), 100),
}
PROMPT_LENGTH = 16


def bench_shape(
    name: str, cfg: Config, new_tokens: int, rounds: int, device: str
) -> dict[str, float]:
    torch.manual_seed(0)
    hf = new_gpt2(cfg).to(device)
    hf.generation_config.eos_token_id = (
        None  # never stop early: every run generates exactly new_tokens tokens
    )
    explicit = load_gpt2_weights(DemoTransformer(cfg), hf).eval().to(device)
    fused = FusedTransformer(cfg).eval().to(device)
    fused.load_state_dict(explicit.state_dict())
    prompt = torch.randint(
        0, cfg.d_vocab, (1, PROMPT_LENGTH), generator=torch.Generator().manual_seed(0)
    ).to(device)
    mask = torch.ones_like(prompt)

    def hugging_face():
        with torch.no_grad():
            return hf.generate(
                prompt,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )

    runs = {
        "Hugging Face generate (its cache)": hugging_face,
        "ours: fused twin, KV cache": lambda: generate(fused, prompt, new_tokens, temperature=0),
        "ours: explicit classes, KV cache": lambda: generate(
            explicit, prompt, new_tokens, temperature=0
        ),
    }
    reference = hugging_face()
    for label, run in runs.items():  # warm-up, and the same tokens from every contestant
        out = run()
        if not torch.equal(out, reference):
            raise SystemExit(
                f"{label} generated other tokens than Hugging Face: {out.tolist()} vs "
                f"{reference.tolist()}"
            )
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = interleaved_times(runs, rounds, sync)
    medians = {label: statistics.median(t) for label, t in times.items()}
    hf_time = medians["Hugging Face generate (its cache)"]
    print(
        f"\n{name}: d_model={cfg.d_model} n_layers={cfg.n_layers} d_vocab={cfg.d_vocab} "
        f"n_ctx={cfg.n_ctx}; prompt {PROMPT_LENGTH} tokens + {new_tokens} new, greedy, batch 1, "
        f"{device} float32, {torch.get_num_threads()} threads, median of {rounds}"
    )
    for label, t in medians.items():
        print(
            f"  {label:<36} {t * 1e3:9.1f} ms/run {new_tokens / t:9.1f} tok/s   HF / this = "
            f"{hf_time / t:.2f}   (runs from {min(times[label]) * 1e3:.1f} to "
            f"{max(times[label]) * 1e3:.1f} ms)",
            flush=True,
        )
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--new-tokens",
        type=int,
        default=None,
        help="new tokens per run (default: 100 for each shape)",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: PyTorch's choice)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    for name in args.shapes:
        cfg, new_tokens = SHAPES[name]
        bench_shape(name, cfg, args.new_tokens or new_tokens, args.rounds, args.device)


if __name__ == "__main__":
    main()
