"""Which tokenizer gives the lower loss for the same CPU time: GPT-2's (50,257 tokens) or our small
BPE from notebook 01?

For each run config and tokenizer, time a few training steps, size max_steps so that training fills
the same time budget (capped, as in notebook 03, at max_epochs passes, with warmup and cosine decay
fitted to it), train, and report validation loss per character: the only unit in which different
tokenizers compare. Notebook 03 uses the winner for `ci` and `cpu` (utils/configs.py, `tokenizer`).
    python bench/bench_tokenizer_choice.py                        # ci config, 30 s per tokenizer
    python bench/bench_tokenizer_choice.py --configs cpu --budget 180
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

from utils.bpe import BPETokenizer
from utils.configs import CONFIGS
from utils.fused import FusedTransformer
from utils.model import Config
from utils.resources import load_corpus, load_tokenizer
from utils.safe_training import SafeTrainer as Trainer  # notebook 03's trainer, as it trains
from utils.training import TrainingArgs, pack, run_length, tokenize_documents


def run(config_name: str, tokenizer_name: str, budget_s: float, corpus, gpt2) -> dict:
    run_cfg = CONFIGS[config_name]
    if tokenizer_name == "gpt2":
        encode, eot_id, d_vocab = gpt2.encode, gpt2.eos_token_id, len(gpt2)
    else:
        bpe = BPETokenizer.train(corpus.train_text, run_cfg.bpe_vocab_size)
        encode, eot_id, d_vocab = bpe.encode, bpe.eot_id, len(bpe)
    cfg = Config(**run_cfg.model, d_vocab=d_vocab)
    val_stream = tokenize_documents(corpus.val, encode, eot_id)
    train_seq, val_seq = (
        pack(tokenize_documents(corpus.train, encode, eot_id), cfg.n_ctx),
        pack(val_stream, cfg.n_ctx),
    )
    chars_per_token = sum(map(len, corpus.val)) / len(val_stream)

    with tempfile.TemporaryDirectory() as tmp:
        base = TrainingArgs(**run_cfg.train, checkpoint_dir=tmp)
        torch.manual_seed(0)
        probe = Trainer(FusedTransformer(cfg), base, train_seq, val_seq)
        batch = train_seq[: base.batch_size]
        probe.training_step(batch)  # warm-up
        start = time.perf_counter()
        for _ in range(5):
            probe.training_step(batch)
        step_s = (time.perf_counter() - start) / 5
        # the time budget sets the steps; then notebook 03's rule: at most max_epochs passes, warmup
        # at most half the run
        steps, warmup = run_length(
            len(train_seq),
            base.batch_size,
            max(20, int(budget_s / step_s)),
            base.warmup_steps,
            run_cfg.max_epochs,
        )
        never = steps + 1
        args = replace(
            base,
            max_steps=steps,
            warmup_steps=warmup,
            eval_every=steps,
            sample_every=never,
            checkpoint_every=never,
        )
        torch.manual_seed(0)
        trainer = Trainer(FusedTransformer(cfg), args, train_seq, val_seq)
        start = time.perf_counter()
        history = trainer.train()
        seconds = time.perf_counter() - start
    n_params = sum(p.numel() for p in trainer.model.parameters())
    val = history.val_loss[-1]
    return dict(
        config=config_name,
        tokenizer=tokenizer_name,
        d_vocab=d_vocab,
        params=n_params,
        steps=steps,
        seconds=seconds,
        step_ms=1000 * step_s,
        val_token=val,
        val_char=val / chars_per_token,
        chars_per_token=chars_per_token,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--configs", nargs="+", default=["ci"], choices=["ci", "cpu"])
    parser.add_argument(
        "--budget", type=float, default=30.0, help="seconds of training per tokenizer"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gpt2 = load_tokenizer()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.budget:.0f} s of "
        "training per run"
    )
    print(
        f"{'config':>6} {'tokenizer':>9} {'d_vocab':>7} {'params':>10} {'ms/step':>8} "
        f"{'steps':>6} {'seconds':>7} {'chars/tok':>9} {'val nats/tok':>12} {'val nats/char':>13}"
    )
    for config_name in args.configs:
        corpus = load_corpus(max_chars=CONFIGS[config_name].corpus_chars)
        results = [run(config_name, name, args.budget, corpus, gpt2) for name in ("bpe", "gpt2")]
        for r in results:
            print(
                f"{r['config']:>6} {r['tokenizer']:>9} {r['d_vocab']:>7,} {r['params']:>10,} "
                f"{r['step_ms']:>8.1f} {r['steps']:>6} {r['seconds']:>7.1f} "
                f"{r['chars_per_token']:>9.2f} {r['val_token']:>12.3f} {r['val_char']:>13.3f}"
            )
        best = min(results, key=lambda r: r["val_char"])
        other = max(results, key=lambda r: r["val_char"])
        print(
            f"{config_name}: {best['tokenizer']} wins by "
            f"{other['val_char'] - best['val_char']:.3f} nats/char (configs.py uses "
            f"{CONFIGS[config_name].tokenizer!r})"
        )


if __name__ == "__main__":
    main()
