"""GENERATED from notebooks/03_training.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/03_training.ipynb, code cell 5

import collections
import contextlib
import errno
import functools
import math
import numbers
import os
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

import utils.gpu
import utils.model  # checkpoints are rebuilt as utils.model.DemoTransformer (a notebook may define its own model)
import utils.sampling  # generate (notebook 04), for the samples taken while training
from utils.model import Float, Int, next_token_loss


def tokenize_documents(docs: list[str], encode, eot_id: int) -> torch.Tensor:
    """Each document tokenised whole, with <|endoftext|> before it, concatenated into one 1-D stream."""
    ids: list[int] = []
    for doc in docs:
        ids.append(eot_id)
        ids.extend(encode(doc))
    return torch.tensor(ids, dtype=torch.long)


def pack(stream: torch.Tensor, n_ctx: int) -> torch.Tensor:
    """Cut a 1-D token stream into [n_sequences, n_ctx] rows (the remainder is dropped)."""
    if not isinstance(stream, torch.Tensor):
        raise TypeError(
            f"pack: stream must be a 1-D tensor of token ids, got a {type(stream).__name__}; use torch.tensor(ids)"
        )
    if stream.ndim != 1:
        raise ValueError(
            f"pack: stream must be 1-D (one long stream of token ids), got shape {tuple(stream.shape)}; "
            f"use stream.flatten() if its rows belong together"
        )
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, numbers.Integral) or n_ctx < 1:
        raise ValueError(f"pack: n_ctx must be a positive int, got {n_ctx!r}")
    n = len(stream) // n_ctx
    if n == 0:
        raise ValueError(
            f"only {len(stream)} tokens: not enough for one sequence of n_ctx = {n_ctx}"
        )
    return stream[: n * n_ctx].view(n, int(n_ctx))


@functools.lru_cache(maxsize=2)
def _epoch_order(n_rows: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def batch_rows(step: int, n_rows: int, batch_size: int, seed: int) -> torch.Tensor:
    """The rows of the batch for `step`: each epoch is a seeded shuffle of all rows, cut into batches. It depends only on the step
    and the seed, so a run resumed at step 500 sees the batches an uninterrupted run would have seen from step 500 on."""
    epoch, k = divmod(step, n_rows // batch_size)
    return _epoch_order(n_rows, seed, epoch)[k * batch_size : (k + 1) * batch_size]


# --- notebooks/03_training.ipynb, code cell 7
def baselines(
    train_stream: torch.Tensor, val_stream: torch.Tensor, d_vocab: int
) -> dict[str, float]:
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
    return {
        "uniform": math.log(d_vocab),
        "unigram": -unigram[val_next].log().mean().item(),
        "bigram": -bigram.log().mean().item(),
    }


# --- notebooks/03_training.ipynb, code cell 9
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
    checkpoint_dir: str = "checkpoints"  # each run writes into its own folder inside it
    seed: int = 0
    device: str = "cpu"
    autocast: str | None = (
        None  # "bfloat16" or "float16" (GPU only, float16 with a gradient scaler); None: float32
    )
    micro_batch_size: int | None = (
        None  # split each batch into micro-batches of this size, accumulating gradients; None: whole
    )
    fused_adamw: bool = (
        True  # AdamW's update for all parameters in one kernel (GPU, and CPU since PyTorch 2.4)
    )
    compile: bool = False  # torch.compile the loss (model and cross-entropy together)

    def __post_init__(self):
        for name in (
            "batch_size",
            "max_steps",
            "eval_every",
            "eval_batches",
            "sample_every",
            "sample_tokens",
            "checkpoint_every",
        ):
            setattr(self, name, _whole_number(name, getattr(self, name), minimum=1))
        self.warmup_steps = _whole_number("warmup_steps", self.warmup_steps, minimum=0)
        self.seed = _whole_number("seed", self.seed, minimum=0)
        self.lr = _real_number("lr", self.lr, "a finite number > 0", lambda x: x > 0)
        self.min_lr_ratio = _real_number(
            "min_lr_ratio", self.min_lr_ratio, "between 0 and 1", lambda x: 0 <= x <= 1
        )
        self.weight_decay = _real_number(
            "weight_decay", self.weight_decay, "a finite number >= 0", lambda x: x >= 0
        )
        self.grad_clip = _real_number(
            "grad_clip", self.grad_clip, "a finite number > 0", lambda x: x > 0
        )
        if (
            isinstance(self.betas, (str, bytes))
            or not hasattr(self.betas, "__len__")
            or len(self.betas) != 2
        ):
            raise TypeError(
                f"TrainingArgs.betas must be a pair (beta1, beta2) such as (0.9, 0.95), got {self.betas!r}"
            )
        self.betas = tuple(
            _real_number("betas", b, "a pair of numbers in [0, 1)", lambda x: 0 <= x < 1)
            for b in self.betas
        )
        if not isinstance(self.sample_prompt, str) or not self.sample_prompt:
            raise ValueError(
                f"TrainingArgs.sample_prompt must be a non-empty string (sampling continues a prompt), "
                f"got {self.sample_prompt!r}"
            )
        if not isinstance(self.checkpoint_dir, (str, os.PathLike)) or not str(self.checkpoint_dir):
            raise TypeError(
                f"TrainingArgs.checkpoint_dir must be a folder path, got {self.checkpoint_dir!r}"
            )
        self.checkpoint_dir = str(self.checkpoint_dir)
        for name in ("fused_adamw", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"TrainingArgs.{name} must be True or False, got {getattr(self, name)!r}"
                )
        self.device = str(self.device)  # torch.device("cuda") works too
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device):
            raise ValueError(
                f"TrainingArgs.device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}"
                + (" (for an NVIDIA GPU, 'cuda')" if self.device.lower() == "gpu" else "")
            )
        if self.autocast not in (None, "bfloat16", "float16"):
            raise ValueError(
                f"TrainingArgs.autocast must be None, 'bfloat16' or 'float16', got {self.autocast!r}"
            )
        if self.autocast and not self.device.startswith("cuda"):
            raise ValueError(
                f"TrainingArgs.autocast={self.autocast!r} needs a CUDA device (device is {self.device!r}); use None on a CPU"
            )
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"TrainingArgs.device is {self.device!r}, but PyTorch sees no CUDA GPU here; use device='cpu' "
                f"(in Colab: Runtime > Change runtime type > GPU)"
            )
        if self.device == "mps" and not torch.backends.mps.is_available():
            raise ValueError(
                "TrainingArgs.device is 'mps', but this machine has no Apple GPU that PyTorch can use; use device='cpu'"
            )
        micro = self.micro_batch_size
        if micro is not None and (
            isinstance(micro, bool)
            or not isinstance(micro, numbers.Integral)
            or micro <= 0
            or self.batch_size % micro
        ):
            raise ValueError(
                f"TrainingArgs.micro_batch_size must be None or a positive int that divides batch_size = {self.batch_size}, "
                f"got {micro!r}"
            )
        self.micro_batch_size = None if micro is None else int(micro)

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


def _whole_number(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(
        value, numbers.Integral
    ):  # numpy integers are Integral; True is not a size
        raise TypeError(f"TrainingArgs.{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"TrainingArgs.{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _real_number(name: str, value, allowed: str, ok) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"TrainingArgs.{name} must be {allowed}, got {value!r}")
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"TrainingArgs.{name} must be {allowed}, got {value!r}")
    return float(value)


# --- notebooks/03_training.ipynb, code cell 10
def lr_at(step: int, args: TrainingArgs) -> float:
    """Linear warmup to args.lr, then cosine decay to args.lr * min_lr_ratio at max_steps (and flat after it).
    Step 0 already gets lr / warmup_steps: a zero learning rate would waste a step."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
    return args.lr * (
        args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


# --- notebooks/03_training.ipynb, code cell 12
def make_optimizer(model: torch.nn.Module, args: TrainingArgs) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices and embeddings (W_...) but not on biases (b_...) or LayerNorm's w and b."""
    trained = [(name.split(".")[-1], p) for name, p in model.named_parameters() if p.requires_grad]
    decay = [p for name, p in trained if name.startswith("W_")]
    no_decay = [p for name, p in trained if not name.startswith("W_")]
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.lr, betas=args.betas, fused=args.fused_adamw or None)


# --- notebooks/03_training.ipynb, code cell 14
def optimizer_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float
) -> torch.Tensor:
    """One update: backpropagate `loss` (adding to gradients already there), clip the gradients' total norm to `grad_clip`, step,
    then clear the gradients for the next step. Returns the loss detached from the graph (no .item(): that would wait for the GPU)."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# --- notebooks/03_training.ipynb, code cell 16
def next_token_accuracy(
    logits: Float[Tensor, "batch posn d_vocab"], tokens: Int[Tensor, "batch posn"]
) -> float:
    """Fraction of positions where the highest logit is the token that comes next (the last position has no next token)."""
    return (logits[:, :-1].argmax(-1) == tokens[:, 1:]).float().mean().item()


# --- notebooks/03_training.ipynb, code cell 18
def model_flops_per_token(cfg: utils.model.Config) -> float:
    """nanoGPT's estimate: 6N (forward + backward through the weights) + 12·L·H·Q·T (attention scores and mixing)."""
    # N counts the weights that take part in matmuls: the blocks and W_U (W_E and W_pos are lookups, not matmuls)
    d_mlp = 0 if cfg.attn_only else cfg.d_mlp
    n_params = (
        cfg.n_layers * (4 * cfg.d_model * cfg.n_heads * cfg.d_head + 2 * cfg.d_model * d_mlp)
        + cfg.d_vocab * cfg.d_model
    )
    return 6 * n_params + 12 * cfg.n_layers * cfg.n_heads * cfg.d_head * cfg.n_ctx


def scaled_optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    grad_clip: float,
    scaler: torch.amp.GradScaler,
) -> torch.Tensor:
    """optimizer_step for float16 training (GPUs without bfloat16, such as the T4): the loss is scaled up before backward so that
    small gradients do not round to zero in float16, and unscaled before clipping; the scaler skips a step whose gradients overflowed."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


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
            loss = loss.to(
                "cpu", non_blocking=True
            )  # a GPU-to-CPU copy with non_blocking lands in page-locked memory by itself
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


# --- notebooks/03_training.ipynb, code cell 19
class TrainingDiverged(RuntimeError):
    """Training went wrong at step `bad_from`: the weights of that step (and later) are not to be trusted."""

    def __init__(self, message: str, bad_from: int):
        super().__init__(message)
        self.bad_from = bad_from


def diverged(loss: float, d_vocab: int) -> bool:
    """A loss that is not finite, or more than twice a uniform guess's ln(d_vocab): the weights have blown up."""
    return not math.isfinite(loss) or loss > 2 * math.log(d_vocab)


@dataclass
class History:
    train_tokens: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_tokens: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)


CHECKPOINT_KEYS = {
    "model",
    "optimizer",
    "step",
    "history",
    "args",
    "model_cfg",
    "tokenizer",
}  # what every checkpoint holds
OPTIONAL_CHECKPOINT_KEYS = {"scaler", "model_class", "frozen", "resumed_from"}
OLD_ARGS = {"autocast_bf16", "wandb_project"}  # TrainingArgs fields of earlier versions, still read
OLD_MODEL_CFG = {"attn_impl"}


def model_config(saved: dict) -> utils.model.Config:
    """The model Config stored in a checkpoint."""
    return utils.model.Config(**{k: v for k, v in saved.items() if k not in OLD_MODEL_CFG})


def training_args(saved: dict, **overrides) -> TrainingArgs:
    """The TrainingArgs stored in a checkpoint (older checkpoints stored autocast_bf16=True/False)."""
    saved = {k: v for k, v in saved.items() if k != "wandb_project"}
    if "autocast_bf16" in saved:
        saved["autocast"] = "bfloat16" if saved.pop("autocast_bf16") else None
    return TrainingArgs(**{**saved, **overrides})


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by Trainer, loaded with weights_only=True (a file cannot run code); anything else: a clear error."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"the checkpoint must be a file path (such as trainer.last_checkpoint), got {path!r}"
        )
    path = Path(path)
    if path.is_dir():
        inside = checkpoints_in(path)
        raise IsADirectoryError(
            f"{path} is a folder; give a checkpoint file in it"
            + (f", such as {inside[-1]}" if inside else " (it holds no step_*.pt files)")
        )
    if not path.is_file():
        nearby = checkpoints_in(path.parent) if path.parent.is_dir() else []
        raise FileNotFoundError(
            f"no checkpoint at {path}; checkpoints in {path.parent}: "
            f"{[str(p) for p in nearby[-5:]] or 'none'}"
        )
    not_ours = f"{path} is not a checkpoint of this project (the step_*.pt files a Trainer writes)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as error:  # truncated, random bytes, a text file, or objects weights_only refuses to load
        reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:150]}"
        if "weights_only" in str(error):
            reason = "it holds Python objects that a weights-only load refuses to run"
        raise ValueError(f"{not_ours}: torch.load could not read it ({reason})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{not_ours}: it holds a {type(state).__name__}, not a checkpoint's dict")
    missing = CHECKPOINT_KEYS - state.keys()
    if not missing and not all(
        isinstance(state[k], dict) for k in ("model", "optimizer", "history", "args", "model_cfg")
    ):
        raise ValueError(
            f"{not_ours}: its parts are not what a Trainer saves (model, optimizer, history, args and model_cfg are dicts)"
        )
    if missing:
        hugging_face = any(str(k).startswith(("transformer.", "h.0.", "wte.")) for k in state)
        hint = (
            "a Hugging Face GPT-2 state dict? utils.model.load_gpt2_weights loads those"
            if hugging_face
            else "a bare state dict? load it with model.load_state_dict"
        )
        raise ValueError(f"{not_ours}: it lacks {sorted(missing)} ({hint})")
    known_args = {f.name for f in fields(TrainingArgs)} | OLD_ARGS
    known_cfg = {f.name for f in fields(utils.model.Config)} | OLD_MODEL_CFG
    unknown = sorted(
        (state.keys() - CHECKPOINT_KEYS - OPTIONAL_CHECKPOINT_KEYS)
        | (state["args"].keys() - known_args)
        | (state["model_cfg"].keys() - known_cfg)
    )
    if unknown:
        raise ValueError(
            f"{path} was written by a newer version of this project (it has {unknown}); update your copy of the "
            f"repository (git pull) to load it"
        )
    return state


def checkpoints_in(directory: str | Path) -> list[Path]:
    """The checkpoints in a folder: its own step_*.pt files, or those of its run folders; oldest run first, by step within a run."""
    directory = Path(directory)
    return sorted(directory.glob("step_*.pt")) or sorted(directory.glob("run_*/step_*.pt"))


def model_from_checkpoint(
    state: dict, model_class=None, device: str = "cpu"
) -> utils.model.DemoTransformer:
    """The model a checkpoint holds, rebuilt as `model_class` (default: the fused twin if that is what was trained, else
    utils.model.DemoTransformer; your own class takes the same state dict too)."""
    if model_class is None and state.get("model_class") == "utils.fused.FusedTransformer":
        from utils.fused import (
            FusedTransformer as model_class,
        )  # generated from this notebook's "Making it fast" cells
    model = (model_class or utils.model.DemoTransformer)(model_config(state["model_cfg"]))
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as error:  # missing, unexpected or reshaped weights
        raise ValueError(
            f"the checkpoint's weights do not fit its own model config ({str(error).splitlines()[1].strip()}...): "
            f"the file was changed after it was saved"
        ) from None
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in state.get("frozen", ()))
    return model.to(device)


def load_checkpoint_model(
    path: str | Path, device: str | None = None, model_class=None
) -> tuple[utils.model.DemoTransformer, dict]:
    """The trained model (in eval mode) and the checkpoint's metadata. `device`: where to put the model; by default the device it
    was trained on, or the CPU if that one is not available here. `model_class`: as for model_from_checkpoint."""
    state = read_checkpoint(path)
    if device is None:
        device = state["args"].get("device", "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
    model = model_from_checkpoint(state, model_class, device)
    return model.eval(), {
        k: state[k] for k in ("step", "args", "model_cfg", "tokenizer", "history")
    }


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The checkpoint written last in `checkpoint_dir` (its run_*/step_*.pt files), or None if there is none."""
    paths = list(Path(checkpoint_dir).glob("run_*/step_*.pt"))
    return max(paths, key=lambda p: (p.stat().st_mtime, p.parent.name, p.name)) if paths else None


def write_checkpoint(state: dict, path: Path) -> None:
    """Write `state` to `path` whole or not at all: into a temporary file named after this process, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (
        BaseException
    ) as error:  # a full disk, Ctrl-C, anything: never leave a partial file behind
        tmp.unlink(missing_ok=True)
        if isinstance(error, Exception) and _no_space_left(error, path.parent):
            free = shutil.disk_usage(path.parent).free
            raise OSError(
                errno.ENOSPC,
                f"no space left in {path.parent} for {path.name} ({free / 2**20:.0f} MB free); "
                f"nothing was lost: free some space (older runs' folders, say) and save again",
            ) from None
        raise


def _no_space_left(error: Exception, directory: Path) -> bool:
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(
        error
    ):
        return True
    # torch.save reports a full disk as "[enforce fail at inline_container.cc] ... unexpected pos"
    return "enforce fail" in str(error) and shutil.disk_usage(directory).free < 64 * 2**20


def remove_partial_checkpoints(directory: str | Path) -> list[Path]:
    """Delete temporary files that an interrupted save left in `directory` or its run folders (those of processes that are gone)."""
    removed = []
    for tmp in [*Path(directory).glob("step_*.tmp"), *Path(directory).glob("*/step_*.tmp")]:
        pid = tmp.suffixes[-2][1:] if len(tmp.suffixes) >= 2 else ""  # step_000010.pt.<pid>.tmp
        if pid.isdigit() and _process_exists(int(pid)):
            continue  # a save in progress, in this process or another
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- notebooks/03_training.ipynb, code cell 20
class StopRequests:
    """While training, the first SIGINT (Ctrl-C, Jupyter's stop button) only sets `requested`; the loop stops after the current
    step. A second one raises KeyboardInterrupt at once. Outside the main thread (where signals cannot be caught) it does nothing."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _on_sigint(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt("stopped at once, in the middle of a step")
        self.requested = True
        print(
            "\nStopping after this step, and saving a checkpoint (press again to stop at once, without saving)",
            file=sys.stderr,
        )

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            if self._previous is None:  # installed from C: restore Python's default afterwards
                self._previous = signal.default_int_handler
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@contextlib.contextmanager
def tf32_matmuls(enabled: bool):
    """TF32 for float32 matmuls (about 8x faster on Ampere and later GPUs, 10 mantissa bits) while training, as before afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if enabled:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


# --- notebooks/03_training.ipynb, code cell 21
class Trainer:
    """Trains a DemoTransformer (or a FusedTransformer, or your own model) on packed sequences.
    `train()` can be stopped (Ctrl-C / the stop button) and called again; `Trainer.resume(checkpoint, ...)` continues a run."""

    def __init__(
        self,
        model: utils.model.DemoTransformer,
        args: TrainingArgs,
        train_sequences: torch.Tensor,
        val_sequences: torch.Tensor,
        encode=None,
        decode=None,
        tokenizer_name: str = "",
    ):
        model = getattr(
            model, "_orig_mod", model
        )  # a torch.compile'd model: train (and save) the module inside it
        if not isinstance(args, TrainingArgs):
            raise TypeError(f"args must be a TrainingArgs, got a {type(args).__name__}")
        if model.cfg.n_ctx < 2:
            raise ValueError(
                f"model.cfg.n_ctx is {model.cfg.n_ctx}: a one-token sequence has no next token to predict; "
                f"training needs n_ctx >= 2"
            )
        check_sequences("train_sequences", train_sequences, model.cfg)
        check_sequences("val_sequences", val_sequences, model.cfg)
        if args.batch_size > len(train_sequences):
            raise ValueError(
                f"TrainingArgs.batch_size is {args.batch_size}, more than the {len(train_sequences)} training sequences"
            )
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("the model has no trainable parameter (all have requires_grad=False)")
        if encode is not None and not len(encode(args.sample_prompt)):
            raise ValueError(
                f"TrainingArgs.sample_prompt {args.sample_prompt!r} encodes to no tokens; give a prompt with some text"
            )
        self.args = args
        self.model = model.to(args.device)
        self.train_sequences, self.val_sequences = train_sequences, val_sequences
        self.encode, self.decode, self.tokenizer_name = encode, decode, tokenizer_name
        self.optimizer = make_optimizer(self.model, args)
        self.scaler = torch.amp.GradScaler("cuda", enabled=args.autocast == "float16")
        self.step = 0
        self.history = History()
        self.run_dir: Path | None = (
            None  # this run's folder in args.checkpoint_dir, made at the first save
        )
        self.resumed_from: Path | None = None
        self.last_checkpoint: Path | None = None
        self.saved: list[
            tuple[int, Path]
        ] = []  # (step, path) of each checkpoint this trainer saved or resumed from
        self.broken: str | None = None  # why the model in memory cannot be trained on, if it cannot
        removed = remove_partial_checkpoints(args.checkpoint_dir)
        if removed:
            print(
                f"removed {len(removed)} partial checkpoint file(s) that an interrupted save left in {args.checkpoint_dir}"
            )
        # torch.compile the whole loss, not just the model: the cross-entropy then fuses with the unembedding's output, and the
        # float32 copy of the logits is never written to memory. Evaluation and sampling run the model as it is (eager).
        self.loss_on = torch.compile(self.loss_eager) if args.compile else self.loss_eager

    # ---------------------------------------------------------------- one step
    def autocast(self):
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.args.autocast)
        return torch.autocast("cuda", dtype=dtype, enabled=dtype is not None)

    def loss_eager(self, tokens: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return next_token_loss(
                self.model(tokens), tokens
            )  # autocast runs cross-entropy in float32

    def training_step(self, batch: torch.Tensor) -> torch.Tensor:
        """One optimizer step on `batch` [batch_size, n_ctx]: set this step's learning rate; forward and backward for each
        micro-batch (their gradients add up); your optimizer_step does the last backward, the clipping and the update.
        Returns the batch's mean loss as a 0-d tensor (reading it is left to the caller)."""
        for group in self.optimizer.param_groups:
            group["lr"] = float(
                lr_at(self.step, self.args)
            )  # a 0-d tensor from your lr_at works too
        *earlier, last = batch.split(self.args.micro_batch_size or len(batch))
        n = (
            len(earlier) + 1
        )  # each micro-batch's mean loss is divided by n, so the gradients add up to the whole batch's mean
        total = torch.zeros((), device=batch.device)
        for micro in earlier:
            loss = self.loss_on(micro) / n
            self.scaler.scale(loss).backward()  # the scaler does nothing unless training in float16
            total += loss.detach()
        loss = self.loss_on(last) / n
        if self.scaler.is_enabled():
            returned = scaled_optimizer_step(
                self.model, self.optimizer, loss, self.args.grad_clip, self.scaler
            )
        else:
            returned = optimizer_step(self.model, self.optimizer, loss, self.args.grad_clip)
        return total + torch.as_tensor(
            returned, device=batch.device
        )  # a float works too, at the price of a wait

    def batch(self, step: int) -> torch.Tensor:
        """The batch for `step`, on the training device (in page-locked memory first on a GPU, so the copy runs in the background)."""
        rows = self.train_sequences[
            batch_rows(step, len(self.train_sequences), self.args.batch_size, self.args.seed)
        ]
        return (
            rows.pin_memory().to(self.args.device, non_blocking=True)
            if self.args.on_gpu
            else rows.to(self.args.device)
        )

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Validation loss and next-token accuracy over the first eval_batches batches of the validation set."""
        self.model.eval()
        losses, accuracies = [], []
        size = (
            self.args.micro_batch_size or self.args.batch_size
        )  # what fits in memory for training fits for evaluation
        for start in range(
            0, min(len(self.val_sequences), self.args.eval_batches * self.args.batch_size), size
        ):
            tokens = self.val_sequences[start : start + size].to(self.args.device)
            with self.autocast():
                logits = self.model(tokens).float()
            losses.append(next_token_loss(logits, tokens).item())
            accuracies.append(next_token_accuracy(logits, tokens))
        self.model.train()
        return sum(losses) / len(losses), sum(accuracies) / len(accuracies)

    def sample(self, temperature: float = 0.8) -> str:
        if self.encode is None or self.decode is None:
            return ""
        prompt = torch.tensor(
            [list(self.encode(self.args.sample_prompt))], dtype=torch.long, device=self.args.device
        )
        self.model.eval()
        out = utils.sampling.generate(
            self.model,
            prompt,
            self.args.sample_tokens,
            temperature=temperature,
            top_k=50,
            seed=self.args.seed,
            use_cache=utils.sampling.accepts_cache(self.model),
        )
        self.model.train()
        return self.decode(out[0].tolist())

    # ---------------------------------------------------------------- the loop
    def train(self, max_steps: int | None = None) -> History:
        """Train until args.max_steps (or `max_steps` more steps). Ctrl-C finishes the current step, saves a checkpoint and returns."""
        if self.broken:
            raise RuntimeError(f"this trainer cannot go on: {self.broken}")
        args = self.args
        end = args.max_steps if max_steps is None else min(args.max_steps, self.step + max_steps)
        tokens_per_step = args.batch_size * self.model.cfg.n_ctx
        flops_per_step = model_flops_per_token(self.model.cfg) * tokens_per_step
        peak = (
            utils.gpu.peak_flops(torch.cuda.get_device_name(), args.autocast)
            if args.on_gpu and args.autocast
            else None
        )
        reader = LossReader()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        bar = tqdm(total=end, initial=self.step, desc="training", unit="step", dynamic_ncols=True)
        postfix = {}
        reads = collections.deque(
            maxlen=20
        )  # (time, step) of recent loss reads: speed over several steps, not one

        def record(step: int, loss: float) -> None:
            if diverged(
                loss, self.model.cfg.d_vocab
            ):  # the loss of step `step` measures the weights before its update
                raise TrainingDiverged(
                    f"the training loss became {loss:.4g} at step {step} (a uniform guess scores "
                    f"{math.log(self.model.cfg.d_vocab):.2f})",
                    bad_from=step - 1,
                )
            self.history.train_tokens.append(step * tokens_per_step)
            self.history.train_loss.append(loss)
            reads.append((time.perf_counter(), step))
            postfix["loss"] = f"{loss:.3f}"
            if len(reads) > 1:
                seconds = (reads[-1][0] - reads[0][0]) / (reads[-1][1] - reads[0][1])
                postfix["tok/s"] = f"{tokens_per_step / seconds:,.0f}"
                if peak:
                    postfix["MFU"] = f"{flops_per_step / seconds / peak:.0%}"
            bar.set_postfix(postfix, refresh=False)
            bar.update()

        phase = f"step {self.step + 1}"  # what a second Ctrl-C would cut short
        try:
            with StopRequests() as stop, tf32_matmuls(args.on_gpu):
                while self.step < end and not stop.requested:
                    loss = self.training_step(self.batch(self.step))
                    self.step += 1
                    previous = reader.push(self.step, loss)
                    if previous:
                        record(*previous)
                    evaluating = self.step % args.eval_every == 0 or self.step == end
                    sampling = self.encode and (
                        self.step % args.sample_every == 0 or self.step == end
                    )
                    saving = self.step % args.checkpoint_every == 0 or self.step == end
                    if evaluating or sampling or saving or stop.requested:
                        record(
                            *reader.pop()
                        )  # this step's loss first: never evaluate or save after a diverged step
                        reads.clear()  # evaluating, sampling and saving are not training time
                    if evaluating:
                        phase = f"the evaluation at step {self.step}"
                        self._evaluate_and_record(bar)
                    if sampling:
                        phase = f"the sample at step {self.step}"
                        self.history.samples.append(self.sample())
                        bar.write(f"sample at step {self.step}: {self.history.samples[-1]!r}")
                    if (
                        saving or stop.requested
                    ):  # a stop asked for during the evaluation or the sample saves too
                        phase = f"the save at step {self.step}"
                        self.save_checkpoint()
                    phase = f"step {self.step + 1}"
                if stop.requested:
                    bar.write(
                        f"Stopped at step {self.step}: saved {self.last_checkpoint}. Call trainer.train() to continue, "
                        f"or Trainer.resume('{self.last_checkpoint}', ...) in a new session."
                    )
        except TrainingDiverged as error:
            raise TrainingDiverged(
                f"{error}. {self._go_back_to_last_good_checkpoint(error.bad_from)}", error.bad_from
            ) from None
        except KeyboardInterrupt:
            self.broken = (
                f"it was stopped at once, in the middle of {phase}, so what it holds may be half-updated. "
                f"Resume from the last checkpoint: Trainer.resume('{self.last_checkpoint}', train_sequences, val_sequences, ...)"
                if self.last_checkpoint
                else f"it was stopped at once, in the middle of {phase}, before any checkpoint; build a new Trainer"
            )
            raise KeyboardInterrupt(f"Stopped at once without saving; {self.broken}") from None
        finally:
            bar.close()
        return self.history

    def _evaluate_and_record(self, bar) -> None:
        val_loss, accuracy = self.evaluate()
        if diverged(val_loss, self.model.cfg.d_vocab):
            raise TrainingDiverged(
                f"the validation loss became {val_loss:.4g} at step {self.step} (a uniform guess scores "
                f"{math.log(self.model.cfg.d_vocab):.2f})",
                bad_from=self.step,
            )
        self.history.val_tokens.append(self.step * self.args.batch_size * self.model.cfg.n_ctx)
        self.history.val_loss.append(val_loss)
        self.history.val_accuracy.append(accuracy)
        bar.write(
            f"step {self.step}: train loss {self.history.train_loss[-1]:.3f}, validation loss {val_loss:.3f}, "
            f"accuracy {accuracy:.1%}"
        )

    def _go_back_to_last_good_checkpoint(self, bad_from: int) -> str:
        """After a divergence: put the last checkpoint saved before step `bad_from` back in memory, and say how to go on."""
        lower = f"{self.args.lr / 10:g}"
        suspect = []
        for step, path in reversed(self.saved):
            if step > bad_from or not path.exists() or path.name in suspect:
                continue
            self._load_state(read_checkpoint(path))
            if (
                step == bad_from and self._diverges_on_its_batch()
            ):  # saved just before its loss showed the blow-up
                suspect.append(path.name)
                continue
            break
        else:
            self.broken = "its weights blew up and no checkpoint was saved before that"
            note = f" ({', '.join(suspect)} already held the blown-up weights)" if suspect else ""
            return (
                f"No checkpoint was saved before the weights blew up{note}, so there is nothing good to go back to: build a new "
                f"model and Trainer with a lower learning rate (now {self.args.lr:g}; try lr={lower}) or a smaller grad_clip."
            )
        note = (
            f" {', '.join(suspect)} already held the blown-up weights: do not resume from it."
            if suspect
            else ""
        )
        self.last_checkpoint = path
        return (
            f"The trainer is back at its last good checkpoint, {path} (step {step}).{note} Training on with the same settings "
            f"would diverge again; continue with a lower learning rate: "
            f"Trainer.resume('{path}', train_sequences, val_sequences, encode, decode, lr={lower})"
        )

    @torch.no_grad()
    def _diverges_on_its_batch(self) -> bool:
        """Whether the weights in memory give a blown-up loss on the batch of the step they are at (what the next step would see)."""
        return diverged(self.loss_eager(self.batch(self.step)).item(), self.model.cfg.d_vocab)

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
            "frozen": [name for name, p in self.model.named_parameters() if not p.requires_grad],
            "tokenizer": self.tokenizer_name,
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
        }

    def _load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(
            state["optimizer"]
        )  # moves the optimizer's state to the parameters' device
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.history = History(**state["history"])
        self.broken = None

    def save_checkpoint(self) -> Path:
        """Save this step's checkpoint in this run's folder. Weights that hold inf or NaN are never saved."""
        if not torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all():
            raise TrainingDiverged(
                f"the weights hold inf or NaN at step {self.step} (a step with non-finite gradients); not saving them",
                bad_from=self.step,
            )
        if self.run_dir is None:
            self.run_dir = new_run_dir(self.args.checkpoint_dir)
            tqdm.write(f"this run's checkpoints go to {self.run_dir}")
        path = self.run_dir / f"step_{self.step:06d}.pt"
        write_checkpoint(self.state(), path)
        self.last_checkpoint = path
        self.saved.append((self.step, path))
        return path

    @classmethod
    def resume(
        cls,
        path: str | Path,
        train_sequences,
        val_sequences,
        encode=None,
        decode=None,
        model_class=None,
        **overrides,
    ) -> "Trainer":
        """Rebuild model, optimizer, step and history from a checkpoint. `model_class`: as for model_from_checkpoint; `overrides`:
        TrainingArgs to change, such as device or lr. The resumed run saves into a new folder (its checkpoints record which one
        it came from), so that it never overwrites a file of the original run or of another run resumed from the same file."""
        path = Path(path)
        state = read_checkpoint(path)
        saved_device = state["args"].get("device", "cpu")
        if (
            "device" not in overrides
            and saved_device.startswith("cuda")
            and not torch.cuda.is_available()
        ):
            overrides = {
                "device": "cpu",
                "autocast": None,
                "micro_batch_size": None,
                "compile": False,
                **overrides,
            }
            print(
                f"{path.name} was trained on {saved_device}; there is no CUDA GPU here, so it resumes on the CPU in float32"
            )
        args = training_args(state["args"], **overrides)
        changed = sorted(k for k, v in overrides.items() if state["args"].get(k) != v)
        model = model_from_checkpoint(state, model_class)
        trainer = cls(
            model, args, train_sequences, val_sequences, encode, decode, state["tokenizer"]
        )
        trainer._load_state(state)
        trainer.last_checkpoint = trainer.resumed_from = path
        trainer.saved.append((trainer.step, path))
        print(
            f"resuming {path} at step {trainer.step}"
            + (f" (changed: {', '.join(changed)})" if changed else "")
            + f"; its checkpoints go to a new folder in {args.checkpoint_dir}"
        )
        return trainer


def check_sequences(name: str, sequences, cfg: utils.model.Config) -> None:
    """Token sequences as pack() returns them: a 2-D integer tensor [n_sequences, n_ctx] of ids below d_vocab."""
    if not isinstance(sequences, torch.Tensor):
        raise TypeError(
            f"{name} must be a 2-D tensor of token ids [n_sequences, n_ctx], as pack() returns; got a "
            f"{type(sequences).__name__}"
        )
    if (
        sequences.ndim != 2
        or sequences.dtype in (torch.bool, torch.uint8)
        or sequences.is_floating_point()
        or sequences.is_complex()
    ):
        raise ValueError(
            f"{name} must be a 2-D integer tensor [n_sequences, n_ctx], as pack(stream, n_ctx) returns; got shape "
            f"{tuple(sequences.shape)}, dtype {sequences.dtype}"
        )
    if len(sequences) == 0:
        raise ValueError(
            f"{name} is empty (0 sequences); it needs at least one sequence of n_ctx = {cfg.n_ctx} tokens"
        )
    if sequences.shape[1] != cfg.n_ctx:
        raise ValueError(f"{name} must have n_ctx = {cfg.n_ctx} columns; got {sequences.shape[1]}")
    low, high = int(sequences.min()), int(sequences.max())
    if low < 0 or high >= cfg.d_vocab:
        raise ValueError(
            f"{name} holds token ids from {low} to {high}, outside [0, d_vocab = {cfg.d_vocab}): was the data "
            f"tokenised with another tokenizer?"
        )


def new_run_dir(checkpoint_dir: str | Path) -> Path:
    """A new folder for one run's checkpoints, named after the time it was made (never one that exists)."""
    base = Path(checkpoint_dir) / time.strftime("run_%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not make a new run folder in {checkpoint_dir}")


# --- notebooks/03_training.ipynb, code cell 24
def run_length(
    n_sequences: int,
    batch_size: int,
    max_steps: int,
    warmup_steps: int,
    max_epochs: float | None = None,
) -> tuple[int, int]:
    """(steps, warmup steps) for a run: at most `max_epochs` passes over the training sequences (more passes over a small corpus
    memorise it), and a warmup of at most half the run, so that a short run still reaches its peak learning rate."""
    steps = (
        max_steps
        if max_epochs is None
        else min(max_steps, max(1, round(max_epochs * (n_sequences // batch_size))))
    )
    return steps, min(warmup_steps, steps // 2)
