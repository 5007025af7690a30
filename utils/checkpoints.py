"""Checkpoint files for notebook 03's trainer, made safe for long runs.

A checkpoint is the dict that `Trainer.state()` returns, saved with `torch.save` (notebook 03).
Around that, this module adds what files need on real machines:

* every run writes into its own folder, `run_<date>-<time>`, so no run overwrites another's files;
* a file is written whole or not at all: into a temporary file named after the process, then
  renamed; a full disk gets "no space left in <folder>" (from the errno the OS reports) and no
  partial file, and temporary files left by a killed save are removed at the next start;
* files load with `torch.load(..., weights_only=True)`, which refuses to run code from a file, and
  anything that is not one of our checkpoints (a state dict, a truncated file, another project's
  file) gets an error that says what it is.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from dataclasses import fields
from pathlib import Path

import torch

import utils.model
import utils.training
import utils.validation
from utils.validation import (
    build_model,
    require_device,
    require_folder,
    require_path,
)
from utils.files import abandoned

CHECKPOINT_KEYS = {"model", "optimizer", "step", "history", "args", "model_cfg"}  # Trainer.state()
# what SafeTrainer adds; "tokenizer" and "corpus" let notebooks 04 and 05 reload a run as it was
OPTIONAL_KEYS = {"tokenizer", "corpus", "scaler", "model_class", "frozen", "resumed_from"}
OPTIONAL_KEYS |= {"param_names"}
OLD_ARGS = {"autocast_bf16", "wandb_project"}  # TrainingArgs fields of earlier versions, still read
OLD_MODEL_CFG = {"attn_impl"}


def model_config(saved: dict) -> utils.model.Config:
    """The model Config stored in a checkpoint."""
    if not isinstance(saved, dict):
        raise TypeError(
            f"model_config: give a checkpoint's 'model_cfg' dict, got {type(saved).__name__}"
        )
    return utils.model.Config(**{k: v for k, v in saved.items() if k not in OLD_MODEL_CFG})


def training_args(saved: dict, **overrides) -> utils.training.TrainingArgs:
    """The TrainingArgs stored in a checkpoint (older ones stored autocast_bf16=True/False)."""
    if not isinstance(saved, dict):
        raise TypeError(
            f"training_args: give a checkpoint's 'args' dict, got {type(saved).__name__}"
        )
    saved = {k: v for k, v in saved.items() if k != "wandb_project"}
    if "autocast_bf16" in saved:
        saved["autocast"] = "bfloat16" if saved.pop("autocast_bf16") else None
    return utils.training.TrainingArgs(**{**saved, **overrides})


def checkpoints_in(directory: str | Path) -> list[Path]:
    """The checkpoints in a folder: its own step_*.pt files, or those of its run folders; oldest
    run first, by step within a run."""
    directory = require_folder("directory", directory)
    return sorted(directory.glob("step_*.pt")) or sorted(
        directory.glob("run_*/step_*.pt"), key=lambda path: (_run_order(path.parent), path.name)
    )


def _run_order(run: Path) -> tuple[str, int]:
    """run_<date>-<time>, then its -2, -3 ... -10 (runs started in the same second), in that
    order: as text, -10 would come before -2."""
    match = re.fullmatch(r"(run_\d{8}-\d{6})(?:-(\d+))?", run.name)
    return (match[1], int(match[2] or 1)) if match else (run.name, 0)


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The checkpoint written last in `checkpoint_dir` (its run_*/step_*.pt files; given one run's
    folder, its step_*.pt files), or None."""
    folder = require_folder("checkpoint_dir", checkpoint_dir)
    paths = list(folder.glob("run_*/step_*.pt")) or list(folder.glob("step_*.pt"))
    return max(paths, key=lambda p: (p.stat().st_mtime, p.parent.name, p.name)) if paths else None


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by a Trainer, loaded with weights_only=True (a file cannot run code);
    anything else gets a clear error."""
    path = require_path(
        "the checkpoint must be a file path (such as trainer.last_checkpoint)", path
    )
    if path.is_dir():
        inside = checkpoints_in(path)
        such = f", such as {inside[-1]}" if inside else " (it holds no step_*.pt files)"
        raise IsADirectoryError(f"{path} is a folder; give a checkpoint file in it{such}")
    if not path.is_file():
        nearby = checkpoints_in(path.parent) if path.parent.is_dir() else []
        raise FileNotFoundError(
            f"no checkpoint at {path}; checkpoints in {path.parent}: "
            f"{[str(p) for p in nearby[-5:]] or 'none'}"
        )
    not_ours = f"{path} is not a checkpoint of this project (the step_*.pt files a Trainer writes)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, random bytes, text, or objects that may run code
        first_line = (str(error).strip().splitlines() or [""])[0][:150]
        reason = f"{type(error).__name__}: {first_line}"
        if "Unsupported global" in str(error):  # a pickled object, which could run code
            reason = "it holds Python objects that a weights-only load refuses to run"
        raise ValueError(f"{not_ours}: torch.load could not read it ({reason})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{not_ours}: it holds a {type(state).__name__}, not a checkpoint's dict")
    missing = CHECKPOINT_KEYS - state.keys()
    if missing:
        hugging_face = any(str(k).startswith(("transformer.", "h.0.", "wte.")) for k in state)
        hint = (
            "a Hugging Face GPT-2 state dict? utils.model.load_gpt2_weights loads those"
            if hugging_face
            else "a bare state dict? load it with model.load_state_dict"
        )
        raise ValueError(f"{not_ours}: it lacks {sorted(missing)} ({hint})")
    parts = ("model", "optimizer", "history", "args", "model_cfg")
    if not all(isinstance(state[k], dict) for k in parts) or not _is_step(state["step"]):
        raise ValueError(
            f"{not_ours}: its parts are not what a Trainer saves (model, optimizer, history, args "
            f"and model_cfg are dicts, step an int from 0 to 2**62)"
        )
    broken = _broken_part(state)
    if broken:
        raise ValueError(f"{not_ours}: {broken}")
    known_args = {f.name for f in fields(utils.training.TrainingArgs)} | OLD_ARGS
    known_cfg = {f.name for f in fields(utils.model.Config)} | OLD_MODEL_CFG
    unknown = sorted(
        (state.keys() - CHECKPOINT_KEYS - OPTIONAL_KEYS)
        | (state["args"].keys() - known_args)
        | (state["model_cfg"].keys() - known_cfg)
    )
    if unknown:
        raise ValueError(
            f"{path} was written by a newer version of this project (it has {unknown}); update "
            f"your copy of the repository (git pull) to load it"
        )
    return state


def _broken_part(state: dict) -> str | None:
    """What is wrong with the history or optimizer state of a checkpoint (edited, or of another
    program), so that resuming from it fails here, in one line, not inside a step."""
    history_fields = {f.name for f in fields(utils.training.History)}
    history = state["history"]
    if not history.keys() <= history_fields:
        return f"its history has {sorted(history.keys() - history_fields)}, not a History's fields"
    for name, values in history.items():
        kind = str if name == "samples" else (int, float)
        if not isinstance(values, list) or not all(
            isinstance(v, kind) and not isinstance(v, bool) for v in values
        ):
            return f"its history's {name} is not a list of {'texts' if kind is str else 'numbers'}"
    weights = state["model"]
    not_float = [
        k for k, v in weights.items() if not (torch.is_tensor(v) and v.is_floating_point())
    ]
    if not_float:  # load_state_dict would cast integers to float without a word
        return f"its model weights {not_float[:3]} are not floating-point tensors"
    optimizer = state["optimizer"]
    if not (
        isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
        and all(
            isinstance(g, dict) and isinstance(g.get("params"), list)
            for g in optimizer["param_groups"]
        )
    ):
        return "its optimizer state is not an optimizer's state_dict (state, param_groups)"
    for moments in optimizer["state"].values():
        if not isinstance(moments, dict) or not all(torch.is_tensor(v) for v in moments.values()):
            return "its optimizer state holds moments that are not tensors"
    return None


def _is_step(value) -> bool:  # below 2**62: a step count any run could reach, not a corrupt one
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def model_from_checkpoint(state: dict, model_class=None, device: str = "cpu"):
    """The model a checkpoint holds, rebuilt as `model_class` (default: the fused twin if that is
    what was trained, else utils.model.DemoTransformer; your own class takes the same weights)."""
    if not isinstance(state, dict):
        raise TypeError(
            f"state must be a checkpoint's dict, read_checkpoint(path), got {type(state).__name__}"
        )
    if model_class is None and state.get("model_class") == "utils.fused.FusedTransformer":
        from utils.fused import FusedTransformer as model_class  # noqa: N813 (notebook 03's twin)
    model_class = model_class or utils.model.DemoTransformer
    device = require_device(device)
    try:
        cfg = model_config(state["model_cfg"])
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"the checkpoint's model_cfg is not a valid Config ({error}): the file was changed "
            "after it was saved"
        ) from None
    model = build_model(model_class, cfg)
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as error:  # missing, unexpected or reshaped weights
        detail = (str(error).splitlines()[1:] or [str(error)])[0].strip()
        raise ValueError(
            f"the checkpoint's weights do not fit its own model config as a "
            f"{model_class.__name__} ({detail[:200]}...): the file was changed after it was "
            f"saved, or the class does not hold a DemoTransformer's weights"
        ) from None
    weights = state["model"].items()
    bad = [name for name, w in weights if w.is_floating_point() and not w.isfinite().all()]
    if bad:
        raise ValueError(
            f"the checkpoint's weights hold inf or NaN ({', '.join(bad[:3])}): a trainer never "
            f"saves such weights, so the file was changed after it was saved"
        )
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in state.get("frozen", ()))
    return model.to(device)


def load_checkpoint_model(path: str | Path, device: str | None = None, model_class=None):
    """(the trained model in eval mode, the checkpoint's metadata). `device`: where to put the
    model; by default where it was trained, or the CPU if that is not here."""
    state = read_checkpoint(path)
    if device is None:  # where it was trained, or the CPU
        device = str(state["args"].get("device", "cpu"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        if device == "mps" and not torch.backends.mps.is_available():
            device = "cpu"
        try:
            device = require_device(device)
        except ValueError as err:
            raise ValueError(
                f"{path}: the checkpoint says it was trained on device {device!r}, which is not "
                f"one this machine has ({err}): pass device='cpu'"
            ) from None
    device = require_device(device)
    model = model_from_checkpoint(state, model_class, device)
    keys = ("step", "args", "model_cfg", "tokenizer", "corpus", "history")
    return model.eval(), {k: state.get(k) for k in keys}


def new_run_dir(checkpoint_dir: str | Path) -> Path:
    """A new folder for one run's checkpoints, named after the time it was made."""
    base = require_folder("checkpoint_dir", checkpoint_dir) / time.strftime("run_%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not make a new run folder in {checkpoint_dir}")


def write_checkpoint(state: dict, path: Path) -> None:
    """Write `state` to `path` whole or not at all: into a temporary file named after this
    process, then renamed over `path`."""
    path = require_path("path must be a file path, such as run_dir / 'step_000010.pt'", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException as error:  # a full disk, Ctrl-C, anything: never leave a partial file
        tmp.unlink(missing_ok=True)
        if isinstance(error, Exception) and _no_space_left(error, path.parent, _bytes_of(state)):
            free = shutil.disk_usage(path.parent).free
            raise OSError(
                errno.ENOSPC,
                f"no space left in {path.parent} for {path.name} ({free / 2**20:.0f} MB free); "
                f"nothing was lost: free some space (older runs' folders, say) and save again",
            ) from None
        raise


def _no_space_left(error: Exception, directory: Path, needed: int) -> bool:
    """Whether a failed save ran out of disk: the OS's errno where the error carries one (torch's
    writer does not), else, for an error of writing (not of pickling), whether less room is left
    than the checkpoint's tensors need."""
    for cause in (error, error.__cause__, error.__context__):
        if getattr(cause, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
    if not isinstance(error, (OSError, RuntimeError)):  # a pickling error, say: not the disk
        return False
    free = shutil.disk_usage(directory).free
    return free < max(needed, 64 * 2**20) or not _can_write_a_page(directory)


def _bytes_of(value) -> int:
    """The bytes of the tensors in a checkpoint's state (nested dicts and lists)."""
    if torch.is_tensor(value):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_bytes_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_bytes_of(v) for v in value)
    return 0


def _can_write_a_page(directory: Path) -> bool:
    probe = directory / f".space-probe.{os.getpid()}"
    try:
        with open(probe, "wb") as file:
            file.write(b"\0" * 4096)
            file.flush()
            os.fsync(file.fileno())
        return True
    except OSError as error:
        return error.errno not in (errno.ENOSPC, errno.EDQUOT)
    finally:
        probe.unlink(missing_ok=True)


def remove_partial_checkpoints(directory: str | Path) -> list[Path]:
    """Delete temporary files that an interrupted save left in `directory` or its run folders
    (those of processes that are gone, or that a save of this process no longer holds)."""
    removed, directory = [], require_folder("directory", directory)
    for tmp in [*directory.glob("step_*.tmp"), *directory.glob("run_*/step_*.tmp")]:
        # only what write_checkpoint names its files, step_000010.pt.<pid>.tmp (an older version:
        # step_000010.tmp), not a learner's step_notes.tmp
        if re.fullmatch(r"step_\d+(\.pt\.\d+)?\.tmp", tmp.name) and abandoned(tmp):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
