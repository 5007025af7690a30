"""SafeTrainer: notebook 03's Trainer, with what long runs on real machines need.

The loop, the steps and the functions you wrote (lr_at, make_optimizer, optimizer_step,
next_token_accuracy) are notebook 03's, unchanged: SafeTrainer subclasses its Trainer. It adds:

* **Resume exactly.** A checkpoint also holds the scaler, the frozen parameters, the model class,
  the tokenizer and a fingerprint of the corpus; `SafeTrainer.resume(path, ...)` continues with the
  losses of an uninterrupted run, and maps the optimizer's state to the parameters by name.
* **Stop cleanly.** The first Ctrl-C (Jupyter's stop button) finishes the step in progress, with
  its evaluation, sample and checkpoint, saves and returns; `train()` continues. A second one
  stops at once, and the trainer then refuses to go on (its state may be half-updated).
* **Lose nothing.** One folder per run, atomic writes, a clear error on a full disk, a check that
  the folder can be written before the first step (utils/checkpoints.py).
* **Divergence.** A loss that is NaN or more than twice a uniform guess's stops training; weights
  that hold inf or NaN are never saved, and the trainer goes back to the last checkpoint saved
  before the blow-up, and says how to go on with a lower learning rate.
* **GPU speed and precision.** bf16 or float16 autocast (float16 with a gradient scaler), batches
  in pinned memory, TF32 matmuls while training, `torch.compile` of the loss, and losses read one
  step late, so the GPU never waits for Python; tokens per second and MFU on the progress bar.
"""

from __future__ import annotations

import collections
import contextlib
import math
import signal
import sys
import threading
import time
from pathlib import Path

import torch

import utils.gpu
import utils.model
import utils.training
from utils.checkpoints import (
    model_from_checkpoint,
    new_run_dir,
    read_checkpoint,
    remove_partial_checkpoints,
    training_args,
    write_checkpoint,
)
from utils.printing import print_wrapped
from utils.validation import require_int


class TrainingDiverged(RuntimeError):
    """Training went wrong at step `bad_from`: the weights of that step (and later) are suspect."""

    def __init__(self, message: str, bad_from: int):
        super().__init__(message)
        self.bad_from = bad_from


class _StopAfterThisStep(Exception):
    """Raised between steps once a Ctrl-C asked to stop: the step before it is complete."""


def diverged(loss: float, d_vocab: int) -> bool:
    """A loss that is not finite, or more than twice a uniform guess's ln(d_vocab)."""
    return not math.isfinite(loss) or loss > 2 * math.log(d_vocab)


class StopRequests:
    """While training, the first SIGINT (Ctrl-C, Jupyter's stop button) only sets `requested`; the
    loop stops after the current step. A second one raises KeyboardInterrupt at once. Outside the
    main thread (where signals cannot be caught) it does nothing."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _on_sigint(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt("stopped at once, in the middle of a step")
        self.requested = True
        print_wrapped(
            "\nStopping after this step, and saving a checkpoint (press again to stop at once, "
            "without saving)",
            file=sys.stderr,
        )

    def __enter__(self) -> StopRequests:
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
    """TF32 for float32 matmuls (about 8x faster on Ampere and later GPUs, 10 mantissa bits) while
    training; as before afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if enabled:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


class LossReader:
    """Reads each step's loss one step late. `.item()` on a GPU tensor waits for *everything*
    queued on the GPU; here the loss is copied to the CPU in the background as soon as its step is
    queued, and read after the next step is queued, so the GPU always has work while Python logs.
    On a CPU the value is simply there."""

    def __init__(self):
        self.pending = None

    def push(self, step: int, loss: torch.Tensor) -> tuple[int, float] | None:
        """Queue this step's loss; return the previous step's (step, loss), if any."""
        previous = self.pop()
        event = None
        if loss.is_cuda:
            loss = loss.to("cpu", non_blocking=True)  # lands in page-locked memory by itself
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


def scaled_optimizer_step(model, optimizer, loss, grad_clip: float, scaler) -> torch.Tensor:
    """optimizer_step for float16 training (GPUs without bfloat16, such as the T4): the loss is
    scaled up before backward so that small gradients do not round to zero, and unscaled before
    clipping; the scaler skips a step whose gradients overflowed."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


class SafeTraining:
    """What SafeTrainer adds to a Trainer class, as a mixin: `class SafeTrainer(SafeTraining,
    Trainer)` makes notebook 03's Trainer (yours, in the notebook, with your functions) safe for
    long runs: exact resume, Ctrl-C that finishes the step, one folder per run, atomic writes,
    divergence rollback, GPU precision and speed (see the module's docstring).

    `tokenizer` and `corpus`: what the checkpoints record of the run's tokenizer (utils.runs'
    RunTokenizer.saved) and corpus (its fingerprint), so that a notebook can reload it as it was."""

    def __init__(
        self,
        model,
        args,
        train_sequences,
        val_sequences,
        sample=None,
        tokenizer: dict | str = "",
        corpus: str = "",
    ):
        model = getattr(model, "_orig_mod", model)  # a torch.compile'd model: train the inner one
        super().__init__(model, args, train_sequences, val_sequences, sample)
        self.tokenizer, self.corpus = tokenizer, corpus
        self.scaler = torch.amp.GradScaler("cuda", enabled=args.autocast == "float16")
        self.run_dir: Path | None = (
            None  # this run's folder in checkpoint_dir, made at its first save
        )
        self.resumed_from: Path | None = None
        self.last_checkpoint: Path | None = None
        self.saved: list[tuple[int, Path]] = []  # (step, path) of each checkpoint saved or resumed
        self.broken: str | None = None  # why the model in memory cannot be trained on, if it cannot
        self.phase = ""  # what a second Ctrl-C would cut short
        removed = remove_partial_checkpoints(args.checkpoint_dir)
        if removed:
            print_wrapped(
                f"removed {len(removed)} partial checkpoint file(s) in {args.checkpoint_dir}"
            )
        # compile the whole loss: the cross-entropy then fuses with the unembedding's output, and
        # the float32 copy of the logits is never written to memory (evaluation and sampling: eager)
        self._loss = torch.compile(self._eager_loss) if args.compile else self._eager_loss

    # ------------------------------------------------------------ precision and speed
    def autocast(self):
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.args.autocast)
        return torch.autocast("cuda", dtype=dtype, enabled=dtype is not None)

    def _eager_loss(self, tokens: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return super().loss(tokens)  # autocast runs the cross-entropy in float32

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._loss(tokens)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()  # the scaler does nothing unless training in float16

    def update(self, loss: torch.Tensor) -> torch.Tensor:
        if self.scaler.is_enabled():
            args = (self.model, self.optimizer, loss, self.args.grad_clip, self.scaler)
            return scaled_optimizer_step(*args)
        return torch.as_tensor(super().update(loss), device=loss.device)  # a float works too

    def batch(self, step: int) -> torch.Tensor:
        """The batch for `step` (through page-locked memory on a GPU: the copy runs meanwhile)."""
        if self._stop is not None and self._stop.requested:
            raise _StopAfterThisStep()  # between two steps: the one before is complete
        self.phase = f"step {step + 1}"
        if not self.args.on_gpu:
            return super().batch(step)
        rows = utils.training.batch_rows(
            step, len(self.train_sequences), self.args.batch_size, self.args.seed
        )
        return self.train_sequences[rows].pin_memory().to(self.args.device, non_blocking=True)

    def evaluate(self) -> tuple[float, float]:
        self._flush_losses()
        self.phase = f"the evaluation at step {self.step}"
        with self.autocast():
            val_loss, accuracy = super().evaluate()
        if diverged(val_loss, self.model.cfg.d_vocab):
            raise TrainingDiverged(
                f"the validation loss became {val_loss:.4g} at step {self.step} (a uniform guess "
                f"scores {math.log(self.model.cfg.d_vocab):.2f})",
                bad_from=self.step,
            )
        return val_loss, accuracy

    def sample(self) -> str:
        self._flush_losses()
        self.phase = f"the sample at step {self.step}"
        return super().sample()  # a str, or one clear line

    # ------------------------------------------------------------ the loop
    _stop: StopRequests | None = None

    def train(self, max_steps: int | None = None):
        """Train until args.max_steps (or `max_steps` more steps). Ctrl-C finishes the current step,
        saves a checkpoint and returns; train() then continues."""
        if self.broken:
            raise RuntimeError(f"this trainer cannot go on: {self.broken}")
        if max_steps is not None:
            max_steps = require_int("max_steps", max_steps, minimum=0)
        args = self.args
        self._reader, self._reads = LossReader(), collections.deque(maxlen=20)
        self._tokens_per_step = args.batch_size * self.model.cfg.n_ctx
        flops = utils.gpu.model_flops_per_token(self.model.cfg) * self._tokens_per_step
        on_a_known_gpu = args.on_gpu and args.autocast
        peak = (
            utils.gpu.peak_flops(torch.cuda.get_device_name(), args.autocast)
            if on_a_known_gpu
            else None
        )
        self._flops_per_step, self._peak = flops, peak
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with StopRequests() as self._stop, tf32_matmuls(args.on_gpu):
                try:
                    super().train(max_steps)
                except _StopAfterThisStep:
                    self.bar.close()
                if self._stop.requested:
                    self._flush_losses()
                    if not self.saved or self.saved[-1][0] != self.step:
                        self.save_checkpoint()
                    print_wrapped(
                        f"Stopped at step {self.step}: saved {self.last_checkpoint}. Call "
                        f"trainer.train() to continue, or SafeTrainer.resume("
                        f"'{self.last_checkpoint}', ...) in a new session."
                    )
        except TrainingDiverged as error:
            message = f"{error}. {self._go_back_to_last_good_checkpoint(error.bad_from)}"
            raise TrainingDiverged(message, error.bad_from) from None
        except KeyboardInterrupt:
            resume = (
                f"Resume from the last checkpoint: SafeTrainer.resume('{self.last_checkpoint}', "
                f"train_sequences, val_sequences, ...)"
                if self.last_checkpoint
                else "no checkpoint was saved before it: build a new trainer"
            )
            self.broken = (
                f"it was stopped at once, in the middle of {self.phase}, so what it holds may be "
                f"half-updated. {resume}"
            )
            raise KeyboardInterrupt(f"Stopped at once without saving; {self.broken}") from None
        finally:
            self._stop = None
            self._reader.pending = None
        return self.history

    def record_loss(self, step: int, loss: torch.Tensor) -> None:
        previous = self._reader.push(step, loss)
        if previous is not None:
            self._record(*previous)

    def _flush_losses(self) -> None:
        reader = getattr(self, "_reader", None)
        previous = reader.pop() if reader else None
        if previous is not None:
            self._record(*previous)
        if reader:
            self._reads.clear()  # evaluating, sampling and saving are not training time

    def _record(self, step: int, loss: float) -> None:
        if diverged(
            loss, self.model.cfg.d_vocab
        ):  # step `step`'s loss measures the weights before it
            raise TrainingDiverged(
                f"the training loss became {loss:.4g} at step {step} (a uniform guess scores "
                f"{math.log(self.model.cfg.d_vocab):.2f})",
                bad_from=step - 1,
            )
        super().record_loss(step, loss)
        self._reads.append((time.perf_counter(), step))
        if len(self._reads) > 1:
            seconds = (self._reads[-1][0] - self._reads[0][0]) / (
                self._reads[-1][1] - self._reads[0][1]
            )
            postfix = {"loss": f"{loss:.3f}", "tok/s": f"{self._tokens_per_step / seconds:,.0f}"}
            if self._peak:
                postfix["MFU"] = f"{self._flops_per_step / seconds / self._peak:.0%}"
            self.bar.set_postfix(postfix, refresh=False)

    def _go_back_to_last_good_checkpoint(self, bad_from: int) -> str:
        """After a divergence: put the last checkpoint saved before step `bad_from` back in memory,
        and say how to go on."""
        lower = f"{self.args.lr / 10:g}"
        suspect = []
        for step, path in reversed(self.saved):
            if step > bad_from or not path.exists() or path.name in suspect:
                continue
            self._load_state(read_checkpoint(path))
            if step == bad_from and self._diverges_on_its_batch():  # saved just before the blow-up
                suspect.append(path.name)
                continue
            break
        else:
            self.broken = "its weights blew up and no checkpoint was saved before that"
            note = f" ({', '.join(suspect)} already held the blown-up weights)" if suspect else ""
            return (
                f"No checkpoint was saved before the weights blew up{note}, so there is nothing "
                f"good to go back to: build a new model and trainer with a lower learning rate "
                f"(now {self.args.lr:g}; try lr={lower}) or a smaller grad_clip."
            )
        note = (
            f" {', '.join(suspect)} already held the blown-up weights: do not resume from it."
            if suspect
            else ""
        )
        self.last_checkpoint = path
        return (
            f"The trainer is back at its last good checkpoint, {path} (step {step}).{note} "
            f"Training on with the same settings would diverge again; continue with a lower "
            f"learning rate: "
            f"SafeTrainer.resume('{path}', train_sequences, val_sequences, lr={lower})"
        )

    @torch.no_grad()
    def _diverges_on_its_batch(self) -> bool:
        """Whether the weights in memory blow up on the batch of the step they are at."""
        batch = super().batch(self.step)  # Trainer's: no stop request to look at
        return diverged(self._eager_loss(batch).item(), self.model.cfg.d_vocab)

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        names = {id(p): name for name, p in self.model.named_parameters()}
        in_optimizer = [
            names[id(p)] for group in self.optimizer.param_groups for p in group["params"]
        ]
        return {
            **super().state(),
            "scaler": self.scaler.state_dict(),
            "model_class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            "frozen": [name for name, p in self.model.named_parameters() if not p.requires_grad],
            "param_names": in_optimizer,  # the optimizer's state is by position: these say whose
            "tokenizer": self.tokenizer,
            "corpus": self.corpus,
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
        }

    def _load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(self._optimizer_state_by_name(state))
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        history = dict(state["history"])
        if "sample_steps" not in history:  # written before History kept each sample's step
            history["sample_steps"] = _steps_of_old_samples(state)
            if len(history["sample_steps"]) != len(history.get("samples", [])):
                print_wrapped(
                    f"this checkpoint's {len(history['samples'])} samples have no steps recorded "
                    "(an earlier version wrote it): they stay in the file, not in this history"
                )
                history["samples"], history["sample_steps"] = [], []
        self.history = type(self.history)(**history)
        self.broken = None

    def _optimizer_state_by_name(self, state: dict) -> dict:
        """The saved optimizer state, renumbered for this optimizer by parameter name (a class that
        registers the same parameters in another order would otherwise swap Adam's moments), with
        every moment's shape checked against its parameter (a mismatch crashes fused AdamW)."""
        saved, params = state["optimizer"], dict(self.model.named_parameters())
        name_of = {id(p): name for name, p in params.items()}
        our_groups = [[name_of[id(p)] for p in g["params"]] for g in self.optimizer.param_groups]
        ours = [name for group in our_groups for name in group]
        theirs = state.get("param_names") or _names_in_saved_order(state["model"], our_groups)
        groups = saved.get("param_groups")
        mismatch = ValueError(
            "the checkpoint's optimizer state does not match the parameters this model trains "
            "(other parameters frozen, added or grouped otherwise); resume with the model and "
            "make_optimizer it was trained with, or start a new run from its weights"
        )
        sizes = [len(g.get("params", ())) for g in groups] if isinstance(groups, list) else None
        if sizes != [len(g) for g in our_groups] or sorted(theirs) != sorted(ours):
            raise mismatch
        position = {k: i for i, k in enumerate(k for g in groups for k in g["params"])}
        for group, names in zip(groups, our_groups):
            if {theirs[position[k]] for k in group["params"]} != set(names):
                raise mismatch
        index = {name: i for i, name in enumerate(ours)}
        moments = {}
        for k, moment in saved.get("state", {}).items():
            if k not in position:
                raise mismatch
            name = theirs[position[k]]
            if not isinstance(moment, dict) or not {"step", "exp_avg", "exp_avg_sq"} <= set(moment):
                raise ValueError(
                    f"the checkpoint's optimizer state for {name} lacks AdamW's step, exp_avg or "
                    f"exp_avg_sq: the file was edited or written by another optimizer; start a "
                    f"new run from its weights"
                )
            for value in moment.values():
                if (
                    torch.is_tensor(value)
                    and value.is_floating_point()
                    and not value.isfinite().all()
                ):
                    raise ValueError(  # a NaN moment or step would turn every later update NaN
                        f"the checkpoint's optimizer state for {name} holds inf or NaN: resume "
                        f"from an earlier checkpoint, or start a new run from its weights"
                    )
                if torch.is_tensor(value) and value.ndim and value.shape != params[name].shape:
                    raise ValueError(
                        f"the checkpoint's optimizer state for {name} has shape "
                        f"{tuple(value.shape)}, but {name} is {tuple(params[name].shape)}: the "
                        f"file does not match its own weights"
                    )
            moments[index[name]] = moment
        # the hyperparameters of this run's args (a resume may change weight_decay, betas or
        # fused_adamw), with the saved moments and step counts
        new_groups = [
            {**group, **{k: v for k, v in current.items() if k != "params"}}
            | {"params": [index[name] for name in names]}
            for group, current, names in zip(groups, self.optimizer.param_groups, our_groups)
        ]
        return {"state": moments, "param_groups": new_groups}

    def save_checkpoint(self) -> Path:
        """Save this step's checkpoint in this run's folder; never weights that hold inf or NaN."""
        self._flush_losses()
        self.phase = f"the save at step {self.step}"
        self._refuse_non_finite_weights()
        if self.run_dir is None:
            self.run_dir = new_run_dir(self.args.checkpoint_dir)
            print_wrapped(f"this run's checkpoints go to {self.run_dir}")
        path = self.run_dir / f"step_{self.step:06d}.pt"
        write_checkpoint(self.state(), path)
        self.last_checkpoint = path
        self.saved.append((self.step, path))
        return path

    def _refuse_non_finite_weights(self) -> None:
        if not torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all():
            raise TrainingDiverged(
                f"the weights hold inf or NaN at step {self.step} (a step with non-finite "
                f"gradients); not saving them",
                bad_from=self.step,
            )

    @classmethod
    def resume(
        cls, path, train_sequences, val_sequences, sample=None, model_class=None, **overrides
    ):
        """Rebuild model, optimizer, step and history from a checkpoint. `model_class`: as for
        utils.checkpoints.model_from_checkpoint; `overrides`: TrainingArgs to change, such as device
        or lr. The resumed run saves into a new folder next to the run it came from (or in the
        `checkpoint_dir` given): never where the file says, and never over another run's files."""
        state = read_checkpoint(path)
        path = Path(path)
        saved_device = str(state["args"].get("device", "cpu"))
        if (
            "device" not in overrides
            and saved_device.startswith("cuda")
            and not torch.cuda.is_available()
        ):
            cpu = {"device": "cpu", "autocast": None, "micro_batch_size": None, "compile": False}
            overrides = {**cpu, **overrides}
            print_wrapped(
                f"{path.name} was trained on {saved_device}; there is no CUDA GPU here, so it "
                f"resumes on the CPU in float32"
            )
        if "checkpoint_dir" not in overrides:  # the folder that holds its run folder
            folder = path.resolve().parent
            overrides["checkpoint_dir"] = str(
                folder.parent if folder.name.startswith("run_") else folder
            )
        try:
            args = training_args(state["args"], **overrides)
        except (TypeError, ValueError) as error:
            if _valid_args(state["args"]):  # then it is an override that is wrong
                raise
            raise ValueError(
                f"{path}: the TrainingArgs stored in this checkpoint are not valid ({error}); the "
                "file was changed after it was saved (pass the right value as an override)"
            ) from None
        changed = sorted(
            k for k, v in overrides.items() if state["args"].get(k) != v and k != "checkpoint_dir"
        )
        model = model_from_checkpoint(state, model_class)
        run = {"tokenizer": state.get("tokenizer", ""), "corpus": state.get("corpus", "")}
        trainer = cls(model, args, train_sequences, val_sequences, sample, **run)
        trainer._load_state(state)
        trainer.last_checkpoint = trainer.resumed_from = path
        trainer.saved.append((trainer.step, path))
        print_wrapped(
            f"resuming {path} at step {trainer.step}"
            + (f" (changed: {', '.join(changed)})" if changed else "")
            + f"; its checkpoints go to a new folder in {args.checkpoint_dir}"
        )
        return trainer


def _names_in_saved_order(saved_weights: dict, groups: list[list[str]]) -> list[str]:
    """Whose moment is whose in a checkpoint written before param_names: its optimizer took each
    group's parameters in the order its model registered them, the order of its saved weights."""
    order = {name: i for i, name in enumerate(saved_weights)}
    return [name for group in groups for name in sorted(group, key=order.__getitem__)]


def _steps_of_old_samples(state: dict) -> list[int]:
    """The steps of the samples in a checkpoint written before History kept them, where they can
    be told: every sample_every steps and, when a call of train() ended there, the checkpoint's."""
    every, step = state["args"].get("sample_every", 500), state["step"]
    steps = list(range(every, step + 1, every))
    if step % every and len(state["history"].get("samples", [])) == len(steps) + 1:
        steps.append(step)
    return steps


def _valid_args(saved: dict) -> bool:
    try:
        training_args(saved)
    except (TypeError, ValueError):
        return False
    return True


class SafeTrainer(SafeTraining, utils.training.Trainer):
    """Notebook 03's Trainer (the reference in utils/training.py) with SafeTraining's additions:
    for notebooks 04 and 05 and scripts. Notebook 03 builds its own from the Trainer you read
    there."""
