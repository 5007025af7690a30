"""Train outside a notebook: notebook 03's pipeline (its corpus, tokenizer, packing and model
config for a run config) and its trainer (SafeTrainer: lr_at, make_optimizer, optimizer_step as
notebook 03 wrote them, checkpoints, exact resume, Ctrl-C), on one process or, under torchrun, on
several with DistributedDataParallel (utils/distributed.py).

    python -m utils.train --config cpu --max-steps 2000 --checkpoint-dir checkpoints/cli
    python -m utils.train --config cpu --resume checkpoints/cli/run_.../step_002000.pt \
        --max-steps 3000
    torchrun --nproc_per_node=2 -m utils.train --config ci --max-steps 20 --checkpoint-dir /tmp/x

`python -m utils.train --help` lists every option.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch

import utils.checkpoints
import utils.configs
import utils.distributed
import utils.runs
import utils.training
from utils.cli import OneLineParser
from utils.printing import print_wrapped
from utils.resources import load_corpus
from utils.safe_training import SafeTrainer, TrainingDiverged
from utils.sampling import generate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m utils.train",
        description="Train notebook 03's model from the command line, on one process or, under "
        "torchrun --nproc_per_node=N, on N (DistributedDataParallel; gloo on CPUs, nccl on GPUs).",
    )
    parser.add_argument(
        "--config",
        choices=sorted(utils.configs.CONFIGS),
        default=os.environ.get(utils.configs.ENV_VAR) or "cpu",
        help="the run config: model size, corpus, tokenizer, batch size, learning rate "
        f"(default: ${utils.configs.ENV_VAR}, else cpu)",
    )
    parser.add_argument(
        "--max-steps",
        type=_positive_int,
        help="the step the run ends at (a resumed run goes on to it; the learning-rate schedule "
        "is stretched to the new end, so a finished run's learning rate rises again); default: "
        "notebook 03's, the config's max_steps capped at its max_epochs passes over the corpus",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="where this run's folder of checkpoints goes (default: checkpoints/<config>, or, "
        "resuming, next to the run resumed)",
    )
    parser.add_argument("--resume", type=Path, metavar="PATH", help="a checkpoint to go on from")
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        help="sequences per optimizer step, over all processes (default: the config's)",
    )
    parser.add_argument(
        "--micro-batch-size",
        type=_positive_int,
        help="sequences per forward pass on each process; gradients add up over the step's "
        "micro-batches (default: this machine's setting)",
    )
    parser.add_argument("--lr", type=_positive_float, help="peak learning rate (default: config's)")
    parser.add_argument("--seed", type=int, help="data order and initial weights (default: 0)")
    for name, what in (
        ("eval-every", "evaluate on the validation set"),
        ("checkpoint-every", "save a checkpoint"),
        ("sample-every", "print a sample"),
    ):
        parser.add_argument(
            f"--{name}", type=_positive_int, metavar="N", help=f"{what} every N steps"
        )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=300.0,
        help="seconds a process waits for the others before the run fails (default: 300)",
    )
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _fields(options: argparse.Namespace) -> dict:
    """The TrainingArgs the command line sets (those it does not keep the config's or the
    checkpoint's)."""
    names = ("batch_size", "micro_batch_size", "lr", "seed", "eval_every", "checkpoint_every")
    fields = {name: getattr(options, name) for name in names if getattr(options, name) is not None}
    if options.sample_every is not None:
        fields["sample_every"] = options.sample_every
    return fields


def build_trainer(options: argparse.Namespace, distributed: bool, device: str | None):
    """The trainer for these options: a new run of notebook 03's pipeline, or a resumed one."""
    run_cfg = utils.configs.get_config(options.config)
    trainer_class = utils.distributed.DistributedTrainer if distributed else SafeTrainer
    corpus = load_corpus(max_chars=run_cfg.corpus_chars)
    fields = _fields(options)
    if device is not None:
        fields["device"] = device
    if options.resume is not None:
        state = utils.checkpoints.read_checkpoint(options.resume)
        tokenizer = utils.runs.tokenizer_from_checkpoint(state.get("tokenizer"))
        run = utils.runs.prepare_run(run_cfg, corpus, tokenizer)
        fingerprint = utils.runs.corpus_fingerprint(corpus)
        if state.get("corpus") and state["corpus"] != fingerprint:
            raise ValueError(
                f"{options.resume} was trained on another corpus ({state['corpus']}; the "
                f"--config {options.config} corpus here is {fingerprint}): give the --config it "
                "was trained with"
            )
        if options.max_steps is not None:
            fields["max_steps"] = options.max_steps
        if options.checkpoint_dir is not None:
            fields["checkpoint_dir"] = str(options.checkpoint_dir)
        sample = _sampler(run, state["args"].get("sample_prompt", ""), fields, state["args"])
        trainer = trainer_class.resume(
            options.resume, run.train_sequences, run.val_sequences, sample, **fields
        )
        return trainer, run
    run = utils.runs.prepare_run(run_cfg, corpus)
    batch = fields.get("batch_size", run_cfg.train["batch_size"])
    steps, warmup = utils.training.run_length(
        len(run.train_sequences),
        batch,
        options.max_steps or run_cfg.train["max_steps"],
        run_cfg.train["warmup_steps"],
        None if options.max_steps else run_cfg.max_epochs,  # an explicit --max-steps is kept
    )
    checkpoint_dir = options.checkpoint_dir or Path("checkpoints") / run_cfg.name
    args = utils.runs.run_training_args(run_cfg, run, steps, warmup, checkpoint_dir, **fields)
    torch.manual_seed(args.seed)  # as one process: DDP copies rank 0's weights to every rank anyway
    from utils.fused import FusedTransformer  # notebook 03's fast twin of the model

    model = FusedTransformer(run.cfg)
    sample = _sampler(run, args.sample_prompt, {}, vars(args))
    trainer = trainer_class(
        model, args, run.train_sequences, run.val_sequences, sample, **run.recorded
    )
    return trainer, run


def _sampler(run, prompt: str, fields: dict, args: dict):
    """Notebook 03's sample: temperature 0.8, top-k 50, the run's seed."""
    tokens, seed = args.get("sample_tokens", 40), fields.get("seed", args.get("seed", 0))

    def sample(model) -> str:
        device = next(model.parameters()).device
        ids = torch.tensor([run.tokenizer.encode(prompt)], device=device)
        out = generate(model, ids, tokens, temperature=0.8, top_k=50, seed=seed)
        return run.tokenizer.decode(out[0].tolist())

    return sample


def summary(trainer, first_step: int, seconds: float, world: int) -> str:
    history, args = trainer.history, trainer.args
    if trainer.step == first_step:  # a resumed run already at (or past) --max-steps
        return (
            f"nothing to train: the run is at step {trainer.step}, and --max-steps is "
            f"{args.max_steps}; give a larger --max-steps to go on"
        )
    tokens = (trainer.step - first_step) * args.batch_size * trainer.model.cfg.n_ctx
    lines = [
        f"trained to step {trainer.step} of {args.max_steps} on {world} process"
        f"{'es' if world > 1 else ''} in {seconds:.1f} s: {tokens / seconds:,.0f} tokens/s",
        "(the tokens of all processes together, evaluations and saves included)",
    ]
    if history.train_loss:
        lines.append(f"last training loss {history.train_loss[-1]:.4f}")
    if history.val_loss:
        lines.append(
            f"validation loss {history.val_loss[-1]:.4f}, accuracy {history.val_accuracy[-1]:.1%}"
        )
    if trainer.last_checkpoint is not None:
        lines.append(f"last checkpoint: {trainer.last_checkpoint}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    distributed = utils.distributed.launched_by_torchrun()
    rank, world, device = 0, 1, None
    if distributed:
        rank, world, device = utils.distributed.start(options.timeout)
    quiet = contextlib.redirect_stdout(open(os.devnull, "w")) if rank else contextlib.nullcontext()
    if rank:
        os.environ["TQDM_DISABLE"] = "1"  # one progress bar: rank 0's
    try:
        with quiet:
            try:
                trainer, _ = build_trainer(options, distributed, device)
            except (ValueError, TypeError, OSError) as error:  # bad options or files: one line
                print(f"python -m utils.train: error: {error}", file=sys.stderr)
                return 2
            first_step, start = trainer.step, time.perf_counter()
            try:
                trainer.train()
            except (TrainingDiverged, OSError) as error:  # the message says what to do: one line
                print(f"python -m utils.train: error: {error}", file=sys.stderr)
                return 1
            print_wrapped(summary(trainer, first_step, time.perf_counter() - start, world))
        return 0
    finally:
        utils.distributed.stop()


if __name__ == "__main__":
    sys.exit(main())
