"""GENERATED from notebooks/03_training.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/03_training.ipynb, code cell 5

import collections
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, TensorDataset
from tqdm.auto import tqdm

import utils.gpu
import utils.model  # checkpoints are rebuilt as utils.model.DemoTransformer (a notebook may define its own model)
from utils.model import Float, Int, generate, next_token_loss


def tokenize_documents(docs: list[str], encode, eot_id: int) -> torch.Tensor:
    """Each document tokenised whole, with <|endoftext|> before it, concatenated into one 1-D stream."""
    ids: list[int] = []
    for doc in docs:
        ids.append(eot_id)
        ids.extend(encode(doc))
    return torch.tensor(ids, dtype=torch.long)


def pack(stream: torch.Tensor, n_ctx: int) -> torch.Tensor:
    """Cut a token stream into [n_sequences, n_ctx] rows (the remainder is dropped)."""
    n = len(stream) // n_ctx
    if n == 0:
        raise ValueError(f"only {len(stream)} tokens: not enough for one sequence of n_ctx = {n_ctx}")
    return stream[: n * n_ctx].view(n, n_ctx)


class StepBatchSampler(Sampler):
    """Infinite, seeded batches: batch k is the same whichever step training (re)starts from, so a resumed run sees the same data."""

    def __init__(self, n_rows: int, batch_size: int, seed: int, start_step: int = 0):
        if batch_size > n_rows:
            raise ValueError(f"batch_size {batch_size} is larger than the {n_rows} training sequences")
        self.n_rows, self.batch_size, self.seed, self.start_step = n_rows, batch_size, seed, start_step
        self.per_epoch = n_rows // batch_size
        self._epoch, self._order = None, None

    def batch(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:  # one shuffle per epoch, not per step (a large corpus has millions of rows)
            self._epoch = epoch
            self._order = torch.randperm(self.n_rows, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        return self._order[k * self.batch_size:(k + 1) * self.batch_size].tolist()

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


def train_loader(sequences: torch.Tensor, batch_size: int, seed: int, start_step: int = 0, pin_memory: bool = False) -> DataLoader:
    """Batches in a fixed order. pin_memory (for a GPU) puts each batch in page-locked memory, so that .to("cuda", non_blocking=True)
    really copies in the background."""
    return DataLoader(TensorDataset(sequences), batch_sampler=StepBatchSampler(len(sequences), batch_size, seed, start_step),
                      pin_memory=pin_memory)


# --- notebooks/03_training.ipynb, code cell 7
def baselines(train_stream: torch.Tensor, val_stream: torch.Tensor, d_vocab: int) -> dict[str, float]:
    """Validation cross-entropy of three models with no learning beyond counting (add-one smoothing):
    uniform (knows nothing), unigram (token frequencies) and bigram (one token of context)."""
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
    # add-one bigram, backing off to the unigram for the smoothing mass
    bigram = (count_pair + d_vocab * unigram[val_next]) / (count_prev + d_vocab)
    return {"uniform": math.log(d_vocab), "unigram": -unigram[val_next].log().mean().item(), "bigram": -bigram.log().mean().item()}


# --- notebooks/03_training.ipynb, code cell 9
@dataclass
class TrainingArgs:
    batch_size: int = 16
    max_steps: int = 1000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1  # matrices only
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
    autocast: str | None = None  # "bfloat16" or "float16" (GPU only, float16 with a gradient scaler); None: float32
    micro_batch_size: int | None = None  # split each batch into micro-batches of this size, accumulating gradients; None: whole
    fused_adamw: bool = True  # AdamW's update for all parameters in one kernel (GPU, and CPU since PyTorch 2.4)
    compile: bool = False  # torch.compile the loss (model and cross-entropy together)
    wandb_project: str | None = None  # optional Weights & Biases logging; off by default

    def __post_init__(self):
        for name in ("batch_size", "max_steps", "eval_every", "eval_batches", "sample_every", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"TrainingArgs.{name} must be a positive int, got {getattr(self, name)!r}")
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and self.warmup_steps >= 0 and self.grad_clip > 0):
            raise ValueError("need lr > 0, 0 <= min_lr_ratio <= 1, warmup_steps >= 0 and grad_clip > 0")
        if self.autocast not in (None, "bfloat16", "float16"):
            raise ValueError(f"TrainingArgs.autocast must be None, 'bfloat16' or 'float16', got {self.autocast!r}")
        if self.autocast and not self.device.startswith("cuda"):
            raise ValueError(f"TrainingArgs.autocast={self.autocast!r} needs a CUDA device (device is {self.device!r}); use None on a CPU")
        micro = self.micro_batch_size
        if micro is not None and (isinstance(micro, bool) or not isinstance(micro, int) or micro <= 0 or self.batch_size % micro):
            raise ValueError(f"TrainingArgs.micro_batch_size must be None or a positive int that divides batch_size = {self.batch_size}, "
                             f"got {micro!r}")
        self.device = str(self.device)  # torch.device("cuda") works too
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device):
            raise ValueError(f"TrainingArgs.device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")
        for name in ("fused_adamw", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TrainingArgs.{name} must be True or False, got {getattr(self, name)!r}")
        self.betas = tuple(self.betas)


# --- notebooks/03_training.ipynb, code cell 10
def lr_at(step: int, args: TrainingArgs) -> float:
    """Linear warmup to args.lr, then cosine decay to args.lr * min_lr_ratio at max_steps (and flat after it).
    Step 0 already gets lr / warmup_steps: a zero learning rate would waste a step."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# --- notebooks/03_training.ipynb, code cell 12
def make_optimizer(model: torch.nn.Module, args: TrainingArgs) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices and embeddings (W_...) but not on biases (b_...) or LayerNorm's w and b."""
    trained = [(name.split(".")[-1], p) for name, p in model.named_parameters() if p.requires_grad]
    decay = [p for name, p in trained if name.startswith("W_")]
    no_decay = [p for name, p in trained if not name.startswith("W_")]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=args.betas, fused=args.fused_adamw or None)


# --- notebooks/03_training.ipynb, code cell 14
def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> torch.Tensor:
    """One update: backpropagate `loss` (adding to gradients already there), clip the gradients' total norm to `grad_clip`, step,
    then clear the gradients for the next step. Returns the loss detached from the graph (no .item(): that would wait for the GPU)."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# --- notebooks/03_training.ipynb, code cell 16
def next_token_accuracy(logits: Float[Tensor, "batch posn d_vocab"], tokens: Int[Tensor, "batch posn"]) -> float:
    """Fraction of positions where the highest logit is the token that comes next (the last position has no next token)."""
    return (logits[:, :-1].argmax(-1) == tokens[:, 1:]).float().mean().item()


# --- notebooks/03_training.ipynb, code cell 18
def model_flops_per_token(cfg: utils.model.Config) -> float:
    """nanoGPT's estimate: 6N (forward + backward through the weights) + 12·L·H·Q·T (attention scores and mixing)."""
    # N counts the weights that take part in matmuls: the blocks and W_U (W_E and W_pos are lookups, not matmuls)
    n_params = cfg.n_layers * (4 * cfg.d_model * cfg.n_heads * cfg.d_head + 2 * cfg.d_model * cfg.d_mlp) + cfg.d_vocab * cfg.d_model
    return 6 * n_params + 12 * cfg.n_layers * cfg.n_heads * cfg.d_head * cfg.n_ctx


def scaled_optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float,
                          scaler: torch.amp.GradScaler) -> torch.Tensor:
    """optimizer_step for float16 training (GPUs without bfloat16, such as the T4): the loss is scaled up before backward so that
    small gradients do not round to zero in float16, and unscaled before clipping; the scaler skips a step whose gradients overflowed."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class History:
    train_tokens: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_tokens: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)


def model_config(saved: dict) -> utils.model.Config:
    """The model Config stored in a checkpoint (older checkpoints also stored `attn_impl`, which is no longer a setting)."""
    return utils.model.Config(**{k: v for k, v in saved.items() if k != "attn_impl"})


def training_args(saved: dict, **overrides) -> TrainingArgs:
    """The TrainingArgs stored in a checkpoint (older checkpoints stored autocast_bf16=True/False)."""
    saved = dict(saved)
    if "autocast_bf16" in saved:
        saved["autocast"] = "bfloat16" if saved.pop("autocast_bf16") else None
    return TrainingArgs(**{**saved, **overrides})


class LossReader:
    """Reads each step's loss one step late. `.item()` on a GPU tensor waits for *everything* queued on the GPU; here the loss is
    copied to the CPU in the background as soon as its step is queued, and read after the next step is queued, so the GPU always
    has the next step's work while Python logs the last one. On a CPU the value is simply there."""

    def __init__(self):
        self.pending = None

    def push(self, step: int, loss: torch.Tensor) -> tuple[int, float] | None:
        """Queue this step's loss; return the previous step's (step, loss), if any."""
        previous = self.pop()
        event = None
        if loss.is_cuda:
            loss = loss.to("cpu", non_blocking=True)  # into page-locked memory, copied when the GPU gets there
            event = torch.cuda.Event()
            event.record()
        self.pending = (step, loss, event)
        return previous

    def pop(self) -> tuple[int, float] | None:
        """The queued (step, loss), waiting only for that step's work; None if nothing is queued."""
        if self.pending is None:
            return None
        step, loss, event = self.pending
        self.pending = None
        if event is not None:
            event.synchronize()
        return step, float(loss)


class Trainer:
    """Trains a DemoTransformer (or a FusedTransformer, or your own model) on packed sequences.
    `train()` can be interrupted (Ctrl-C / the stop button) and called again."""

    def __init__(self, model: utils.model.DemoTransformer, args: TrainingArgs, train_sequences: torch.Tensor, val_sequences: torch.Tensor,
                 encode=None, decode=None, tokenizer_name: str = "", baselines: dict | None = None):
        model = getattr(model, "_orig_mod", model)  # a torch.compile'd model: train (and save) the module inside it
        if train_sequences.shape[1] != model.cfg.n_ctx or val_sequences.shape[1] != model.cfg.n_ctx:
            raise ValueError(f"sequences must have n_ctx = {model.cfg.n_ctx} columns; got {train_sequences.shape[1]} and {val_sequences.shape[1]}")
        for split, sequences in (("training", train_sequences), ("validation", val_sequences)):
            if sequences.numel() and not (0 <= int(sequences.min()) and int(sequences.max()) < model.cfg.d_vocab):
                raise ValueError(f"the {split} sequences hold token ids from {int(sequences.min())} to {int(sequences.max())}, "
                                 f"outside [0, d_vocab = {model.cfg.d_vocab}): was the data tokenised with another tokenizer?")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"TrainingArgs.device is {args.device!r}, but PyTorch sees no CUDA GPU here; use device='cpu' "
                             f"(in Colab: Runtime > Change runtime type > GPU)")
        self.args = args
        self.model = model.to(args.device)
        self.train_sequences, self.val_sequences = train_sequences, val_sequences
        self.encode, self.decode, self.tokenizer_name = encode, decode, tokenizer_name
        self.baselines = baselines or {}
        self.optimizer = make_optimizer(self.model, args)
        self.scaler = torch.amp.GradScaler("cuda", enabled=args.autocast == "float16")
        self.step = 0
        self.history = History()
        self.last_checkpoint: Path | None = None
        if args.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        # torch.compile the whole loss, not just the model: the cross-entropy then fuses with the unembedding's output, and the
        # float32 copy of the logits is never written to memory. Evaluation and sampling run the model as it is (eager).
        self.loss_on = torch.compile(self.loss_eager) if args.compile else self.loss_eager
        self._wandb = None

    # ---------------------------------------------------------------- one step
    def autocast(self):
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.args.autocast)
        return torch.autocast("cuda", dtype=dtype, enabled=dtype is not None)

    def loss_eager(self, tokens: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return next_token_loss(self.model(tokens), tokens)  # autocast runs cross-entropy in float32

    def training_step(self, batch: torch.Tensor) -> torch.Tensor:
        """One optimizer step on `batch` [batch_size, n_ctx]: set this step's learning rate; forward and backward for each
        micro-batch (their gradients add up); your optimizer_step does the last backward, the clipping and the update.
        Returns the batch's mean loss as a 0-d tensor (reading it is left to the caller)."""
        for group in self.optimizer.param_groups:
            group["lr"] = float(lr_at(self.step, self.args))  # a 0-d tensor from your lr_at works too
        *earlier, last = batch.split(self.args.micro_batch_size or len(batch))
        n = len(earlier) + 1  # each micro-batch's mean loss is divided by n, so the gradients add up to the whole batch's mean
        total = torch.zeros((), device=batch.device)
        for micro in earlier:
            loss = self.loss_on(micro) / n
            self.scaler.scale(loss).backward()  # the scaler does nothing unless training in float16
            total += loss.detach()
        loss = self.loss_on(last) / n
        if self.scaler.is_enabled():
            returned = scaled_optimizer_step(self.model, self.optimizer, loss, self.args.grad_clip, self.scaler)
        else:
            returned = optimizer_step(self.model, self.optimizer, loss, self.args.grad_clip)
        return total + torch.as_tensor(returned, device=batch.device)  # a float works too, at the price of a wait

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Validation loss and next-token accuracy over the first eval_batches batches of the validation set."""
        self.model.eval()
        losses, accuracies = [], []
        size = self.args.micro_batch_size or self.args.batch_size  # what fits in memory for training fits for evaluation
        for start in range(0, min(len(self.val_sequences), self.args.eval_batches * self.args.batch_size), size):
            tokens = self.val_sequences[start:start + size].to(self.args.device)
            with self.autocast():
                logits = self.model(tokens).float()
            losses.append(next_token_loss(logits, tokens).item())
            accuracies.append(next_token_accuracy(logits, tokens))
        self.model.train()
        return sum(losses) / len(losses), sum(accuracies) / len(accuracies)

    def sample(self, temperature: float = 0.8) -> str:
        if self.encode is None or self.decode is None:
            return ""
        prompt = torch.tensor([self.encode(self.args.sample_prompt)], device=self.args.device)
        self.model.eval()
        out = generate(self.model, prompt, self.args.sample_tokens, temperature=temperature, top_k=50,
                       generator=torch.Generator(device=self.args.device).manual_seed(self.args.seed))
        self.model.train()
        return self.decode(out[0].tolist())

    # ---------------------------------------------------------------- the loop
    def train(self, max_steps: int | None = None) -> History:
        """Train until args.max_steps (or `max_steps` more steps). Ctrl-C saves a checkpoint and returns."""
        args = self.args
        end = args.max_steps if max_steps is None else min(args.max_steps, self.step + max_steps)
        on_gpu = args.device.startswith("cuda")
        loader = iter(train_loader(self.train_sequences, args.batch_size, args.seed, start_step=self.step, pin_memory=on_gpu))
        tokens_per_step = args.batch_size * self.model.cfg.n_ctx
        flops_per_step = model_flops_per_token(self.model.cfg) * tokens_per_step
        peak = utils.gpu.peak_flops(torch.cuda.get_device_name(), args.autocast) if on_gpu and args.autocast else None
        reader = LossReader()
        self._start_wandb()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)  # an interrupted step may have left gradients behind
        bar = tqdm(total=end, initial=self.step, desc="training", unit="step", dynamic_ncols=True)
        postfix = {}
        reads = collections.deque(maxlen=20)  # (time, step) of recent loss reads: speed over several steps, not one

        def record(step: int, loss: float) -> None:
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss} at step {step}; stopped without saving over the last good checkpoint "
                    f"({self.last_checkpoint or 'none saved yet'}). Try a lower learning rate (now {args.lr}) or a smaller grad_clip.")
            self.history.train_tokens.append(step * tokens_per_step)
            self.history.train_loss.append(loss)
            reads.append((time.perf_counter(), step))
            postfix["loss"] = f"{loss:.3f}"
            values = {"train/loss": loss, "lr": lr_at(step - 1, args)}
            if len(reads) > 1:
                seconds = (reads[-1][0] - reads[0][0]) / (reads[-1][1] - reads[0][1])
                postfix["tok/s"] = f"{tokens_per_step / seconds:,.0f}"
                values["tokens_per_s"] = tokens_per_step / seconds
                if peak:
                    postfix["MFU"] = f"{flops_per_step / seconds / peak:.0%}"
            bar.set_postfix(postfix, refresh=False)
            bar.update()
            self._log(values)

        try:
            while self.step < end:
                (batch,) = next(loader)
                loss = self.training_step(batch.to(args.device, non_blocking=True))
                self.step += 1
                previous = reader.push(self.step, loss)
                if previous:
                    record(*previous)
                evaluating = self.step % args.eval_every == 0 or self.step == end
                sampling = self.encode and (self.step % args.sample_every == 0 or self.step == end)
                saving = self.step % args.checkpoint_every == 0 or self.step == end
                if evaluating or sampling or saving:
                    record(*reader.pop())  # this step's loss first: never evaluate or save after a diverged step
                if evaluating:
                    val_loss, accuracy = self.evaluate()
                    if not math.isfinite(val_loss):
                        raise TrainingDiverged(
                            f"validation loss became {val_loss} at step {self.step}; stopped without saving. The last good checkpoint is "
                            f"{self.last_checkpoint or 'none: none was saved yet'}; resume from it with a lower learning rate.")
                    self.history.val_tokens.append(self.step * tokens_per_step)
                    self.history.val_loss.append(val_loss)
                    self.history.val_accuracy.append(accuracy)
                    bar.write(f"step {self.step}: train loss {self.history.train_loss[-1]:.3f}, validation loss {val_loss:.3f}, "
                              f"accuracy {accuracy:.1%}")
                    self._log({"val/loss": val_loss, "val/accuracy": accuracy})
                if sampling:
                    text = self.sample()
                    self.history.samples.append(text)
                    bar.write(f"sample at step {self.step}: {text!r}")
                if saving:
                    self.save_checkpoint()
                if evaluating or sampling or saving:
                    reads.clear()  # their time is not training time
        except KeyboardInterrupt:
            pending = reader.pop()
            if pending:
                record(*pending)
            path = self.save_checkpoint(name="interrupted.pt")
            bar.write(f"Interrupted at step {self.step}: saved {path}. Call trainer.train() to continue, "
                      f"or Trainer.resume('{path}', ...) in a new session.")
        finally:
            bar.close()
        return self.history

    # ---------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "history": asdict(self.history),
            "args": asdict(self.args),
            "model_cfg": asdict(self.model.cfg),
            "model_class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            "tokenizer": self.tokenizer_name,
        }

    def save_checkpoint(self, name: str | None = None) -> Path:
        """Write atomically (temporary file, then rename), so an interrupted save never destroys the previous checkpoint.
        Weights that hold inf or NaN are never saved: the last checkpoint stays the last good one."""
        if not torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all():
            raise TrainingDiverged(
                f"the weights hold inf or NaN at step {self.step} (a step with non-finite gradients); not saving them. The last good "
                f"checkpoint is {self.last_checkpoint or 'none: none was saved yet'}; resume from it with a lower learning rate, "
                f"Trainer.resume(path, ..., lr=...).")
        directory = Path(self.args.checkpoint_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / (name or f"step_{self.step:06d}.pt")
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        self.last_checkpoint = path
        return path

    @classmethod
    def resume(cls, path: str | Path, train_sequences, val_sequences, encode=None, decode=None, baselines=None,
               model_class=None, **overrides) -> "Trainer":
        """Rebuild model, optimizer, step and history from a checkpoint (loaded with weights_only=True). `model_class`: the class to
        rebuild (default: the fused twin if that is what was trained, else utils.model.DemoTransformer); `overrides`: TrainingArgs to
        change, such as device or lr."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {path}; checkpoints so far: {sorted(map(str, path.parent.glob('*.pt')))}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved_device = state["args"].get("device", "cpu")
        if "device" not in overrides and saved_device.startswith("cuda") and not torch.cuda.is_available():
            overrides = {"device": "cpu", "autocast": None, "micro_batch_size": None, "compile": False, **overrides}
            print(f"{path.name} was trained on {saved_device}; there is no CUDA GPU here, so it resumes on the CPU in float32")
        args = training_args(state["args"], **overrides)
        if model_class is None and state.get("model_class") == "utils.fused.FusedTransformer":
            from utils.fused import FusedTransformer as model_class  # generated from this notebook's "Making it fast" cells
        model = (model_class or utils.model.DemoTransformer)(model_config(state["model_cfg"]))
        model.load_state_dict(state["model"], strict=True)
        trainer = cls(model, args, train_sequences, val_sequences, encode, decode, state["tokenizer"], baselines)
        trainer.optimizer.load_state_dict(state["optimizer"])  # moves the optimizer's state to the parameters' device
        if "scaler" in state:
            trainer.scaler.load_state_dict(state["scaler"])
        trainer.step = state["step"]
        trainer.history = History(**state["history"])
        trainer.last_checkpoint = path
        return trainer

    # ---------------------------------------------------------------- optional experiment tracking
    def _start_wandb(self):
        if self.args.wandb_project and self._wandb is None:
            import wandb  # optional: pip install wandb

            self._wandb = wandb.init(project=self.args.wandb_project, config={**asdict(self.args), **asdict(self.model.cfg)})

    def _log(self, values: dict):
        if self._wandb is not None:
            self._wandb.log(values, step=self.step)


def load_checkpoint_model(path: str | Path, device: str | None = None, model_class=None) -> tuple[utils.model.DemoTransformer, dict]:
    """The trained model (in eval mode) and the checkpoint's metadata. `device`: where to put the model; by default the device it
    was trained on, or the CPU if that one is not available here. `model_class`: the class to rebuild (default
    utils.model.DemoTransformer; FusedTransformer and your own class take the same state dict)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if device is None:
        device = state["args"].get("device", "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
    model = (model_class or utils.model.DemoTransformer)(model_config(state["model_cfg"]))
    model.load_state_dict(state["model"], strict=True)
    return model.to(device).eval(), {k: state[k] for k in ("step", "args", "model_cfg", "tokenizer", "history")}
