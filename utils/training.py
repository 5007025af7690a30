"""GENERATED from notebooks/03_training.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/03_training.ipynb, code cell 5

import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from utils.fused import fused_next_token_loss  # next_token_loss, its gradient by hand
from utils.model import Float, Int, next_token_loss
from utils.progress import progress_bar  # tqdm, leaving its last state as text in a notebook
from utils.validation import (
    check_baseline_streams,
    check_documents,
    check_evaluation_data,
    check_model_and_args,
    check_no_overwrite,
    check_not_replacing,
    check_optimizer_step,
    check_run_length,
    check_training_args,
    check_training_data,
    require_batch_rows,
    require_int,
    require_logits_and_tokens,
    require_stream,
    require_text,
    require_training_args,
)


def tokenize_documents(docs: list[str], encode, eot_id: int) -> Tensor:
    """Each document tokenised whole, with <|endoftext|> before it, in one 1-D stream."""
    check_documents(docs, encode, eot_id)  # one str would make each character a document
    ids: list[int] = []
    for doc in docs:
        ids.append(eot_id)
        ids.extend(encode(doc))
    return torch.tensor(ids, dtype=torch.long)


def pack(stream: Tensor, n_ctx: int) -> Tensor:
    """Cut a 1-D token stream into [n_sequences, n_ctx] rows (the remainder is dropped)."""
    n_ctx = require_stream(stream, n_ctx)  # a 1-D tensor, long enough for one row: a clear error
    n = len(stream) // n_ctx
    return stream[: n * n_ctx].view(n, n_ctx)


@functools.lru_cache(maxsize=2)
def _epoch_order(n_rows: int, seed: int, epoch: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n_rows, generator=generator)


def batch_rows(step: int, n_rows: int, batch_size: int, seed: int) -> Tensor:
    """The rows of the batch for `step`: each epoch is a seeded shuffle of all rows, cut into
    batches. It depends only on the step and the seed, so a run resumed at step 500 sees the
    batches an uninterrupted run would have seen from step 500 on."""
    # at least one batch of rows (a clear line if not); numpy ints become Python ints
    step, n_rows, batch_size, seed = require_batch_rows(step, n_rows, batch_size, seed)
    epoch, k = divmod(step, n_rows // batch_size)
    rows = _epoch_order(n_rows, seed, epoch)[k * batch_size : (k + 1) * batch_size]
    return rows.clone()  # yours to edit: the cached shuffle stays as it is


# --- notebooks/03_training.ipynb, code cell 7
def baselines(
    train_stream: torch.Tensor, val_stream: torch.Tensor, d_vocab: int
) -> dict[str, float]:
    """Validation cross-entropy of three models with no learning beyond counting: uniform
    (knows nothing), unigram (token frequencies, add-one) and bigram (one token of context,
    backing off to the unigram)."""
    check_baseline_streams(train_stream, val_stream, d_vocab)  # ids >= d_vocab would collide
    unigram_counts = torch.bincount(train_stream, minlength=d_vocab).double() + 1
    unigram = unigram_counts / unigram_counts.sum()
    train_pairs = train_stream[:-1] * d_vocab + train_stream[1:]
    pair_ids, pair_counts = torch.unique(train_pairs, return_counts=True)
    val_prev, val_next = val_stream[:-1], val_stream[1:]
    val_pairs = val_prev * d_vocab + val_next
    idx = torch.searchsorted(pair_ids, val_pairs).clamp(max=len(pair_ids) - 1)
    seen = pair_ids[idx] == val_pairs
    count_pair = torch.where(seen, pair_counts[idx].double(), torch.zeros((), dtype=torch.double))
    count_prev = torch.bincount(train_stream[:-1], minlength=d_vocab).double()[val_prev]
    # d_vocab extra counts per previous token, spread as the unigram: never a zero probability
    bigram = (count_pair + d_vocab * unigram[val_next]) / (count_prev + d_vocab)
    return {
        "uniform": math.log(d_vocab),
        "unigram": -unigram[val_next].log().mean().item(),
        "bigram": -bigram.log().mean().item(),
    }


# --- notebooks/03_training.ipynb, code cell 9
def run_length(
    n_sequences: int,
    batch_size: int,
    max_steps: int,
    warmup_steps: int,
    max_epochs: float | None = None,
) -> tuple[int, int]:
    """(steps, warmup steps) for a run: at most `max_epochs` passes over the training sequences
    (more passes over a small corpus memorise it), and a warmup of at most half the run, so that a
    short run still reaches its peak learning rate."""
    check_run_length(n_sequences, batch_size, max_steps, warmup_steps, max_epochs)  # counts > 0
    steps = max_steps
    if max_epochs is not None:
        steps = min(max_steps, max(1, round(max_epochs * (n_sequences // batch_size))))
    return steps, min(warmup_steps, steps // 2)


# --- notebooks/03_training.ipynb, code cell 15
@dataclass
class TrainingArgs:
    batch_size: int = 16
    max_steps: int = 1000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1  # weight matrices and embeddings only
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 10
    sample_every: int = 500
    sample_tokens: int = 40
    sample_prompt: str = "Once upon a time"
    checkpoint_every: int = 500
    checkpoint_dir: str = "checkpoints"
    seed: int = 0
    device: str = "cpu"
    autocast: str | None = None  # "bfloat16" or "float16" (GPUs only); None: float32
    micro_batch_size: int | None = None  # split each batch, adding up the gradients; None: whole
    fused_adamw: bool = True  # AdamW's update: one fused call per parameter group
    compile: bool = False  # torch.compile the loss (model and cross-entropy together)

    def __post_init__(self):
        check_training_args(self)

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


# --- notebooks/03_training.ipynb, code cell 16
def lr_at(step: int, args: TrainingArgs) -> float:
    """Linear warmup to args.lr, then cosine decay to args.lr * min_lr_ratio at max_steps (and flat
    after it). Step 0 already gets lr / warmup_steps: a zero learning rate would waste a step."""
    require_training_args("lr_at", args)  # not a dict or None: one clear line
    step = require_int("step", step, minimum=0)  # steps count from 0
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
    decay = (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))  # 1 - r down to 0
    return args.lr * (args.min_lr_ratio + decay)


# --- notebooks/03_training.ipynb, code cell 18
def make_optimizer(model: torch.nn.Module, args: TrainingArgs) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices and embeddings (W_...), but not on biases
    (b_...) or LayerNorm's w and b."""
    check_model_and_args("make_optimizer", model, args)  # one clear line for None or a dict
    trained = [(name.split(".")[-1], p) for name, p in model.named_parameters() if p.requires_grad]
    decay = [p for name, p in trained if name.startswith("W_")]
    no_decay = [p for name, p in trained if not name.startswith("W_")]
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.lr, betas=args.betas, fused=args.fused_adamw or None)


# --- notebooks/03_training.ipynb, code cell 20
def optimizer_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: Tensor, grad_clip: float
) -> Tensor:
    """One update: backpropagate `loss` (adding to gradients already there), clip the gradients'
    total norm to `grad_clip`, step, then clear the gradients for the next step. Returns the loss
    detached from the graph (not .item(), which would wait for the GPU)."""
    # a float (loss.item()), a loss with no graph, grad_clip <= 0 (flips gradients): a clear line
    check_optimizer_step(model, optimizer, loss, grad_clip)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# --- notebooks/03_training.ipynb, code cell 22
def next_token_accuracy(
    logits: Float[Tensor, "batch posn d_vocab"], tokens: Int[Tensor, "batch posn"]
) -> float:
    """Fraction of positions where the highest logit is the token that comes next (the last
    position has no next token)."""
    require_logits_and_tokens(logits, tokens)  # shapes that match, int ids, two positions or more
    return (logits[:, :-1].argmax(-1) == tokens[:, 1:]).float().mean().item()


# --- notebooks/03_training.ipynb, code cell 24
@dataclass
class History:
    train_tokens: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_tokens: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    sample_steps: list[int] = field(default_factory=list)  # the step each sample was taken at


@torch.no_grad()
def validation_metrics(model, sequences: Tensor, args: TrainingArgs) -> tuple[float, float]:
    """Loss and next-token accuracy over the first args.eval_batches batches of `sequences`."""
    check_evaluation_data(model, sequences, args)  # None, empty or one-token rows: one clear line
    training = model.training  # given back as it came
    model.eval()
    loss, accuracy, rows = 0.0, 0.0, 0  # sums weighted by rows: a short last batch counts less
    size = args.micro_batch_size or args.batch_size  # what fits in memory to train fits here
    for start in range(0, min(len(sequences), args.eval_batches * args.batch_size), size):
        tokens = sequences[start : start + size].to(args.device)
        logits = model(tokens).float()
        loss += next_token_loss(logits, tokens).item() * len(tokens)
        accuracy += next_token_accuracy(logits, tokens) * len(tokens)
        rows += len(tokens)
    model.train(training)
    return loss / rows, accuracy / rows


# --- notebooks/03_training.ipynb, code cell 25
class Trainer:
    """Trains a model (DemoTransformer, its fused twin, or yours) on packed sequences."""

    def __init__(self, model, args: TrainingArgs, train_sequences, val_sequences, sample=None):
        check_training_data(model, args, train_sequences, val_sequences, sample)  # a clear error
        self.model, self.args = model.to(args.device), args
        self.train_sequences, self.val_sequences = train_sequences, val_sequences  # from pack()
        self.sample_text: Callable[[torch.nn.Module], str] | None = sample  # model -> its text
        self.optimizer = make_optimizer(self.model, args)
        self.step = 0
        self.history = History()

    def loss(self, tokens: Int[Tensor, "batch posn"]) -> Float[Tensor, ""]:
        return fused_next_token_loss(self.model(tokens), tokens)

    def training_step(self, batch: Int[Tensor, "batch posn"]) -> Float[Tensor, ""]:
        """One optimizer step: set this step's learning rate; forward and backward for each
        micro-batch, their gradients adding up; your optimizer_step does the last backward, the
        clipping and the update. Returns the batch's mean loss."""
        lr = float(lr_at(self.step, self.args))  # one rate for both groups (decay, no decay)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        *earlier, last = batch.split(self.args.micro_batch_size or len(batch))
        n = len(earlier) + 1  # each micro-batch's loss / n: the gradients add up to the mean
        total = torch.zeros((), device=batch.device)
        for micro in earlier:
            loss = self.loss(micro) / n
            self.backward(loss)
            total += loss.detach()
        return total + self.update(self.loss(last) / n)

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def update(self, loss: Tensor) -> Tensor:
        return optimizer_step(self.model, self.optimizer, loss, self.args.grad_clip)

    def batch(self, step: int) -> Int[Tensor, "batch posn"]:
        rows = batch_rows(step, len(self.train_sequences), self.args.batch_size, self.args.seed)
        return self.train_sequences[rows].to(self.args.device)

    def evaluate(self) -> tuple[float, float]:
        return validation_metrics(self.model, self.val_sequences, self.args)

    def sample(self) -> str:
        self.model.eval()
        text = self.sample_text(self.model) if self.sample_text else ""
        self.model.train()
        return require_text("sample(model) must return its text,", text)  # history holds texts

    def train(self, max_steps: int | None = None) -> History:
        """Train until args.max_steps (or `max_steps` more steps)."""
        args = self.args
        if max_steps is not None:  # a clear error for 2.5, -3 or "2"
            max_steps = require_int("max_steps", max_steps, minimum=0)
        end = args.max_steps if max_steps is None else min(args.max_steps, self.step + max_steps)
        check_no_overwrite(self, end)  # an earlier run's step files stay: a clear line, first
        self.model.train()
        with progress_bar(total=end, initial=self.step, desc="training", unit="step") as self.bar:
            while self.step < end:
                loss = self.training_step(self.batch(self.step))
                self.step += 1
                self.record_loss(self.step, loss)
                if self.step % args.eval_every == 0 or self.step == end:
                    self.evaluate_and_record()
                if self.sample_text and (self.step % args.sample_every == 0 or self.step == end):
                    self.history.samples.append(self.sample())
                    self.history.sample_steps.append(self.step)
                    self.bar.write(f"sample at step {self.step}: {self.history.samples[-1]!r}")
                if self.step % args.checkpoint_every == 0 or self.step == end:
                    self.save_checkpoint()
        return self.history

    def record_loss(self, step: int, loss: Tensor | float) -> None:
        seen = self.history.train_tokens[-1] if self.history.train_tokens else 0
        # added step by step: a resumed run may use another batch_size
        self.history.train_tokens.append(seen + self.args.batch_size * self.model.cfg.n_ctx)
        self.history.train_loss.append(float(loss))
        self.bar.set_postfix(loss=f"{self.history.train_loss[-1]:.3f}", refresh=False)
        self.bar.update()

    def evaluate_and_record(self) -> None:
        val_loss, accuracy = self.evaluate()
        self.history.val_tokens.append(self.history.train_tokens[-1])  # trained on so far
        self.history.val_loss.append(val_loss)
        self.history.val_accuracy.append(accuracy)
        self.bar.write(
            f"step {self.step}: train loss {self.history.train_loss[-1]:.3f}, "
            f"validation loss {val_loss:.3f}, accuracy {accuracy:.1%}"
        )

    def state(self) -> dict:
        """Everything needed to go on: a checkpoint is this dict, saved with torch.save."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "history": asdict(self.history),
            "args": asdict(self.args),
            "model_cfg": asdict(self.model.cfg),
        }

    def save_checkpoint(self) -> Path:
        path = Path(self.args.checkpoint_dir) / f"step_{self.step:06d}.pt"
        check_not_replacing(self, path)  # an earlier run's file stays; this run's own may be redone
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state(), path)
        return path


# written by `make export`; sha256 of the text above: 263984ea79f94264
