"""Checks of arguments, shared by every notebook's code: bad input gets one line that names the
argument, what it was and what is allowed, instead of a deep error from inside PyTorch (or, worse,
a wrong result without one).

Numbers: `require_int`, `require_number`, `require_bool` (numpy scalars count as Python's; True is
not a number here, although Python says it is an int). Tokens: `require_token_ids`, for a model's
input, a prompt and packed training data alike. Then, in the order of the notebooks: notebook 01's
BPETokenizer (`check_bpe_parts`, `require_text`, `require_id_list`), notebook 02's Config and GPT-2
weights (`check_config`, `require_config`, `check_gpt2_compatible`), notebook 03's TrainingArgs and
data (`check_training_args`, `require_stream`), notebook 04's samplers and KV cache
(`check_generate_args`, `check_beam_search_args`, `check_cache_use`), and notebook 05's analysis
(`require_cache`, `require_pattern`, `require_attribution`, `require_heads`, ...).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import operator
import os
import re
import sys
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from utils.files import require_path  # torch-free, for the generators too


def _is_bool(value) -> bool:
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")  # numpy's too


def require_int(
    name: str, value, minimum: int | None = 1, maximum: int | None = None, allowed: str = ""
) -> int:
    """`value` as a Python int in [minimum, maximum], or a clear error (bools, floats refused)."""
    if allowed:
        pass
    elif minimum is None:
        allowed = "an int"
    elif minimum == 1 and maximum is None:
        allowed = "a positive int"
    else:
        allowed = f"an int >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def require_number(
    name: str,
    value,
    minimum: float | None = 0,
    allow_minimum: bool = False,
    maximum: float | None = None,
    hint: str = "",
) -> float:
    """`value` as a Python float: finite, > minimum (>= with allow_minimum) and <= maximum."""
    allowed = "a finite number"
    if minimum is not None:
        allowed += f" {'>=' if allow_minimum else '>'} {minimum:g}"
    if maximum is not None:
        allowed += f"{' and' if minimum is not None else ''} <= {maximum:g}"
    allowed += hint
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    value = float(value)
    low_ok = minimum is None or (value >= minimum if allow_minimum else value > minimum)
    if not (math.isfinite(value) and low_ok and (maximum is None or value <= maximum)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def require_bool(name: str, value) -> bool:
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def require_one_argument(name: str, function, what: str) -> None:
    """`function` can be called with one positional argument (`what`), or a clear TypeError."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: calling it will tell
        return
    try:
        signature.bind(None)
    except TypeError:
        raise TypeError(
            f"{name} must be a function of one argument, {what}; "
            f"{getattr(function, '__name__', name)}{signature} is not"
        ) from None


def refuse_meta(name: str, value) -> None:
    """A tensor on the meta device holds shapes but no values: nothing can be read from it."""
    if isinstance(value, Tensor) and value.device.type == "meta":
        raise ValueError(
            f"{name} is on the meta device (a shape without values): give a tensor on 'cpu' or "
            "'cuda'"
        )


def require_token_ids(
    tokens,
    cfg,
    name: str = "tokens",
    check_values: bool | None = None,
    exact_posn: bool = False,
    device: torch.device | None = None,
    model: torch.nn.Module | None = None,
) -> None:
    """A clear error unless `tokens` is an int64 or int32 tensor [batch, posn] of ids in
    [0, cfg.d_vocab), with 1 <= posn <= cfg.n_ctx (== n_ctx with exact_posn, for packed data).
    `device`: where the model's weights are (a model's forward): tokens must be there too.
    `model` (a model's forward): its weights' device, and a cfg its weights were built with.

    check_values: read the ids back to check their range. By default only on the CPU: on a GPU,
    reading values makes Python wait for the GPU, on every call."""
    example = "e.g. torch.tensor([[50256, 40, 716]])"
    if model is not None:
        require_built_with(model)
        device = model.embed.W_E.device
    if not isinstance(tokens, Tensor):
        got = type(tokens).__name__
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {got}; {example}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"{name} must be token ids of dtype torch.int64 (long) or torch.int32, "
            f"got dtype {tokens.dtype}; use {name.split()[0]}.long()"
        )
    if tokens.device.type == "meta":
        raise ValueError(
            f"{name} are on the meta device, which holds shapes but no values; token ids must be "
            f"real: make them on 'cpu' or 'cuda', {example}"
        )
    if device is not None and device.type == "meta":
        raise ValueError(
            "the model's weights are on the meta device (shapes without values): build it on "
            "'cpu' or 'cuda', or load real weights into it with load_state_dict(..., assign=True)"
        )
    if device is not None and tokens.device != device:
        raise ValueError(
            f"{name} are on {tokens.device}, the model on {device}: move them there, "
            f"{name.split()[0]}.to({str(device)!r})"
        )
    if tokens.ndim != 2:
        hint = f"; for a single sequence add a batch dimension: {name.split()[0]}[None]"
        if exact_posn:  # training data: a stream of ids is cut into rows, not made one row
            hint = f"; a stream of ids is cut into rows of n_ctx first: pack(stream, {cfg.n_ctx})"
        raise ValueError(
            f"{name} must have shape [batch, posn], got shape {tuple(tokens.shape)}"
            + (hint if tokens.ndim == 1 else "")
        )
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(
            f"{name} has shape {tuple(tokens.shape)}: give at least one sequence of at least one "
            f"token (the <|endoftext|> id, say)"
        )
    if exact_posn and tokens.shape[1] != cfg.n_ctx:
        raise ValueError(
            f"{name} must have n_ctx = {cfg.n_ctx} columns (as pack(stream, n_ctx) makes them); "
            f"got {tokens.shape[1]}"
        )
    if tokens.shape[1] > cfg.n_ctx:
        raise ValueError(
            f"{name} has {tokens.shape[1]} positions, more than n_ctx = {cfg.n_ctx}; keep the "
            f"last {cfg.n_ctx}: {name.split()[0]}[:, -{cfg.n_ctx}:]"
        )
    if check_values is None:
        check_values = tokens.device.type == "cpu"
    if not check_values or torch.compiler.is_compiling():
        return  # reading values back would break a compiled graph; eager calls still check them
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= cfg.d_vocab:
        raise ValueError(
            f"{name} must be ids in [0, {cfg.d_vocab}) (d_vocab = {cfg.d_vocab}); got ids from "
            f"{low} to {high}: was it tokenised with another tokenizer?"
        )


def require_documents(docs, name: str = "docs") -> None:
    """A list (or tuple) of strs, one per document (not one str: each character would be one)."""
    if isinstance(docs, (str, bytes)) or not isinstance(docs, (list, tuple)):
        hint = " (one str: wrap it, [text], or give corpus.train)" if isinstance(docs, str) else ""
        raise TypeError(
            f"{name} must be a list of documents (strs), got {type(docs).__name__}{hint}"
        )
    not_text = next((doc for doc in docs if not isinstance(doc, str)), None)
    if not_text is not None:
        raise TypeError(
            f"{name} must hold strs (documents), got {type(not_text).__name__} {not_text!r:.40}"
        )


def check_documents(docs, encode, eot_id) -> None:
    """tokenize_documents: a list of strs (require_documents), a tokenizer's encode function, and
    an id >= 0."""
    require_documents(docs)
    if not callable(encode):
        raise TypeError(
            f"encode must be a function (tokenizer.encode), got {type(encode).__name__}"
        )
    require_int("eot_id", eot_id, minimum=0)
    if docs:  # what encode returns, on the start of one document: token ids, not text
        probe = encode(docs[0][:64])
        if (
            isinstance(probe, (str, bytes))
            or not hasattr(probe, "__iter__")
            or not all(_is_index(i) for i in probe)
        ):
            raise TypeError(
                f"encode must return a list of token ids (ints), got {type(probe).__name__} "
                f"{probe!r:.40} for {docs[0][:20]!r}"
            )


def require_batch_rows(step, n_rows, batch_size, seed) -> tuple[int, int, int, int]:
    """batch_rows: a step >= 0, at least one batch of rows, a seed TrainingArgs allows; returned
    as Python ints (numpy's are accepted)."""
    # beyond 2**62, torch's int64 arithmetic overflows
    step = require_int("step", step, minimum=0, maximum=2**62, allowed="an int from 0 to 2**62")
    n_rows = require_int("n_rows", n_rows, maximum=2**62, allowed="an int from 1 to 2**62")
    batch_size = require_int("batch_size", batch_size)
    if batch_size > n_rows:
        raise ValueError(f"batch_size = {batch_size} is more than the {n_rows} rows there are")
    return step, n_rows, batch_size, require_int("seed", seed, minimum=0, maximum=2**32 - 1)


def check_baseline_streams(train_stream, val_stream, d_vocab) -> None:
    """baselines: two 1-D streams of ids in [0, d_vocab) (the validation one with a next token to
    predict) and d_vocab >= 2 (the pair ids prev * d_vocab + next must not collide)."""
    d_vocab = require_int("d_vocab", d_vocab, minimum=2)
    for name, stream, least in (("train_stream", train_stream, 2), ("val_stream", val_stream, 2)):
        if not isinstance(stream, Tensor) or stream.ndim != 1:
            got = tuple(stream.shape) if isinstance(stream, Tensor) else type(stream).__name__
            raise TypeError(f"{name} must be a 1-D tensor of token ids, got {got}")
        if stream.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{name} must hold token ids (int64), got dtype {stream.dtype}")
        if len(stream) < least:
            raise ValueError(f"{name} has {len(stream)} tokens: a baseline needs two or more")
        refuse_meta(name, stream)
        low, high = int(stream.min()), int(stream.max())
        if low < 0 or high >= d_vocab:
            raise ValueError(
                f"{name} must hold ids in [0, {d_vocab}) (d_vocab = {d_vocab}); got ids from "
                f"{low} to {high}"
            )


def check_run_length(n_sequences, batch_size, max_steps, warmup_steps, max_epochs) -> None:
    """run_length: positive counts, warmup_steps >= 0, max_epochs None or a number > 0."""
    n_sequences, batch_size = (
        require_int("n_sequences", n_sequences),
        require_int("batch_size", batch_size),
    )
    require_int("max_steps", max_steps), require_int("warmup_steps", warmup_steps, minimum=0)
    if batch_size > n_sequences:
        raise ValueError(
            f"batch_size = {batch_size} is more than the {n_sequences} training sequences: not "
            f"one batch can be made (a smaller batch_size, or more text)"
        )
    if max_epochs is not None:
        require_number("max_epochs", max_epochs, hint=" (or None: no limit)")


def require_built_with(model) -> None:
    """A clear error unless model.cfg is the config the model's weights were built with (a Config
    is frozen, but model.cfg itself can be replaced; the layers keep the old one)."""
    cfg, wrong = model.cfg, []
    expected = {
        "embed.W_E": (cfg.d_vocab, cfg.d_model),
        "pos_embed.W_pos": (cfg.n_ctx, cfg.d_model),
        "blocks.0.attn.W_Q": (cfg.n_heads, cfg.d_model, cfg.d_head),
    }
    for name, shape in expected.items():
        weight = model
        for part in name.split("."):
            weight = getattr(weight, part, None) if not part.isdigit() else _nth(weight, int(part))
        if isinstance(weight, Tensor) and tuple(weight.shape) != shape:
            wrong.append(f"{name} is {tuple(weight.shape)}, cfg says {shape}")
    blocks = getattr(model, "blocks", None)
    if blocks is not None and len(blocks) != cfg.n_layers:
        wrong.append(f"{len(blocks)} blocks, cfg says n_layers = {cfg.n_layers}")
    if wrong:
        raise ValueError(
            f"model.cfg is not the config the model was built with ({'; '.join(wrong)}): build a "
            "new model from the new config instead of replacing model.cfg"
        )


def _nth(modules, i: int):
    return modules[i] if modules is not None and len(modules) > i else None


def require_stream(stream, n_ctx) -> int:
    """Notebook 03's pack: `stream` a 1-D tensor of token ids with at least `n_ctx` of them;
    returns n_ctx as an int."""
    n_ctx = require_int("pack: n_ctx", n_ctx)
    if not isinstance(stream, Tensor):
        got = type(stream).__name__
        raise TypeError(
            f"pack: stream must be a 1-D tensor of token ids, got a {got}; use torch.tensor(ids)"
        )
    if stream.ndim != 1:
        raise ValueError(
            f"pack: stream must be 1-D (one stream of ids), got shape {tuple(stream.shape)}; "
            f"use stream.flatten() if its rows belong together"
        )
    if stream.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"pack: stream must hold token ids (int64), got dtype {stream.dtype}")
    if len(stream) < n_ctx:
        raise ValueError(f"only {len(stream)} tokens: not enough for one sequence of {n_ctx}")
    if stream.device.type == "cpu" and int(stream.min()) < 0:
        raise ValueError(f"pack: stream must hold token ids (>= 0), got {int(stream.min())}")
    return n_ctx


def require_token_id(name: str, value, d_vocab: int) -> int:
    """`value` as an int token id in [0, d_vocab), or a clear error."""
    value = require_int(name, value, minimum=0)
    if value >= d_vocab:
        raise ValueError(
            f"{name} must be a token id in [0, {d_vocab}) (d_vocab = {d_vocab}), got {value}"
        )
    return value


# paths: checkpoints and their folders, Hugging Face folders, the exercises folder
def require_folder(name: str, path) -> Path:
    path = require_path(f"{name} must be a folder path", path)
    if path.is_file():
        raise NotADirectoryError(
            f"{name} must be a folder of checkpoints, got the file {path}: load it with "
            f"load_checkpoint_model({str(path)!r})"
        )
    return path


def check_writable(checkpoint_dir: str | Path) -> None:
    """A clear error now, before any training, if checkpoints cannot be written there."""
    directory = require_folder("checkpoint_dir", checkpoint_dir)
    dangling = next(
        (p for p in [directory, *directory.parents] if p.is_symlink() and not p.exists()), None
    )
    if dangling is not None:
        raise FileNotFoundError(
            f"checkpoint_dir {directory}: {dangling} is a link to {os.readlink(dangling)}, which "
            f"does not exist; make that folder, or give another checkpoint_dir"
        )
    existing = next((p for p in [directory, *directory.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise NotADirectoryError(f"checkpoint_dir {directory}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"checkpoint_dir {directory}: {existing} cannot be written to")


def require_device(device) -> str:
    """`device` as a string this machine has, or a clear error."""
    text = str(device) if isinstance(device, (str, torch.device)) else None
    if text is None or not _DEVICE.fullmatch(text):
        hint = " (for an NVIDIA GPU, 'cuda')" if str(device).lower() == "gpu" else ""
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}{hint}")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device is {text!r}, but PyTorch sees no CUDA GPU here; use 'cpu'")
    if text == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device is 'mps', but this machine has no Apple GPU; use 'cpu'")
    return text


def require_model_class(model_class) -> None:
    """A model class that takes a Config (DemoTransformer, FusedTransformer or the learner's): not
    a model built from one, a function or a str."""
    if isinstance(model_class, type) and issubclass(model_class, torch.nn.Module):
        return
    if isinstance(model_class, torch.nn.Module):
        got = f"a {type(model_class).__name__} model; give its class, {type(model_class).__name__}"
    else:
        got = f"{model_class!r:.60} ({type(model_class).__name__})"
    raise TypeError(
        "model_class must be a model class that takes a Config, such as DemoTransformer or "
        f"FusedTransformer, got {got}"
    )


def build_model(model_class, cfg):
    """model_class(cfg), or one clear line when model_class is not a model class that takes a
    Config."""
    require_model_class(model_class)
    try:
        inspect.signature(model_class).bind(cfg)
    except TypeError:
        raise TypeError(
            f"model_class must take a Config, as DemoTransformer(cfg) does; "
            f"{model_class.__name__}{inspect.signature(model_class)} does not"
        ) from None
    except ValueError:  # no signature to read: the call will tell
        pass
    try:
        return model_class(cfg)
    except TypeError as error:
        raise TypeError(
            f"model_class {model_class.__name__} cannot be built from a Config: {error}"
        ) from None


def check_config(cfg) -> None:
    """Notebook 02's Config: sizes are positive ints, eps and init_range positive numbers."""
    where = type(cfg).__name__
    for name in ("d_model", "d_vocab", "n_ctx", "d_head", "d_mlp", "n_heads", "n_layers"):
        object.__setattr__(cfg, name, require_int(f"{where}.{name}", getattr(cfg, name)))
    if cfg.d_vocab * cfg.d_model > 2**34:  # 64 GB of float32 weights: a typo, not a model
        raise ValueError(
            f"{where}.d_vocab = {cfg.d_vocab:,} with d_model = {cfg.d_model:,} would need "
            f"{4 * cfg.d_vocab * cfg.d_model / 2**30:,.0f} GB for W_E alone; GPT-2's d_vocab "
            f"is 50,257"
        )
    _require_memory_for(cfg, where)
    for name in ("layer_norm_eps", "init_range"):
        object.__setattr__(cfg, name, require_number(f"{where}.{name}", getattr(cfg, name)))
    object.__setattr__(cfg, "attn_only", require_bool(f"{where}.attn_only", cfg.attn_only))


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        return 2**36


def _free_memory() -> int:
    """Bytes this process may still allocate: the memory the OS calls available, and no more than
    what an address-space limit (ulimit -v) leaves; Linux's figures, else the physical memory."""
    free = _physical_memory()
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    free = min(free, int(line.split()[1]) * 1024)
        import resource  # not on Windows

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            with open("/proc/self/status") as status:
                used = next(int(x.split()[1]) * 1024 for x in status if x.startswith("VmSize:"))
            free = min(free, limit - used)
    except (OSError, ImportError, ValueError, StopIteration):
        pass
    return free


def _require_free_memory_for(cfg) -> None:
    """A clear error, before torch's allocator gives its own, when the largest weight of `cfg`
    (W_E, W_U, W_pos, an MLP's or all heads' W_Q) needs more memory than is free now."""
    largest = {
        "W_E and W_U [d_vocab, d_model]": cfg.d_vocab * cfg.d_model,
        "W_pos [n_ctx, d_model]": cfg.n_ctx * cfg.d_model,
        "W_in and W_out [d_model, d_mlp]": cfg.d_model * cfg.d_mlp,
        "W_Q [n_heads, d_model, d_head]": cfg.n_heads * cfg.d_model * cfg.d_head,
    }
    weight = max(largest, key=largest.get)
    need, free = 4 * largest[weight], _free_memory()
    if need > free:
        raise MemoryError(
            f"{weight} would need {need / 2**30:,.1f} GB of float32 alone, more than the "
            f"{free / 2**30:,.1f} GB this machine has free now: use a smaller config, or close "
            "what holds memory (other notebooks' kernels)"
        )


def _require_memory_for(cfg, where: str) -> None:
    """A clear error for sizes whose float32 weights would not fit in this machine's memory (a
    typo, such as an extra 0), instead of the allocator's message from deep inside the model."""
    per_layer = 4 * cfg.d_model * cfg.n_heads * cfg.d_head + 2 * cfg.d_model * cfg.d_mlp
    parts = {
        "d_vocab": 2 * cfg.d_vocab * cfg.d_model,  # W_E and W_U (untied, as in TransformerLens)
        "n_ctx": cfg.n_ctx * cfg.d_model,
        "n_layers, d_mlp, n_heads and d_head": cfg.n_layers * per_layer,
    }
    gigabytes = 4 * sum(parts.values()) / 2**30
    if 4 * sum(parts.values()) > _physical_memory():
        biggest = max(parts, key=parts.get)
        sizes = ", ".join(
            f"{f} = {getattr(cfg, f):,}" for f in re.findall(r"[a-z_]+", biggest) if hasattr(cfg, f)
        )
        raise ValueError(
            f"{where} would need {gigabytes:,.0f} GB of float32 weights, more than this machine's "
            f"{_physical_memory() / 2**30:,.0f} GB of memory, most of it for {sizes} "
            f"(d_model = {cfg.d_model:,}); GPT-2 small has 124M parameters, 0.5 GB"
        )


def require_config(name: str, cfg, config_class) -> None:
    """A clear error unless `cfg` is an instance of `config_class` (not the class itself, a dict or
    Hugging Face's GPT2Config)."""
    fields = ("d_model", "d_vocab", "n_ctx", "n_heads", "d_head", "n_layers")
    if type(cfg).__name__ == config_class.__name__ and all(hasattr(cfg, f) for f in fields):
        # utils.model.Config, or the same class run again in a notebook's cell; a layer being
        # built from it (the caller is a module's __init__) must find memory for its weights
        if isinstance(sys._getframe(1).f_locals.get("self"), torch.nn.Module):
            _require_free_memory_for(cfg)
        return
    short = config_class.__name__
    if cfg is config_class:
        got = f"the class {short} (call it: {short}(...))"
    elif type(cfg).__name__ == "GPT2Config":
        got = "a Hugging Face GPT2Config (convert it: config_from_hf(hf_config))"
    elif isinstance(cfg, dict):
        got = f"dict (unpack it: {short}(**cfg))"
    elif isinstance(cfg, torch.nn.Module):
        got = (
            f"a model, {type(cfg).__name__}: its config is model.cfg (and for a hooked copy of a "
            f"model you have, use HookedDemoTransformer.from_model(model))"
        )
    elif cfg is None:
        got = "None"
    else:
        got = f"{type(cfg).__name__} {cfg!r}"[:120]
    module = config_class.__module__  # "__main__" in notebook 02 itself: not worth naming
    where = "" if module == "__main__" else f"{module}."
    raise TypeError(f"{name} must be a {where}{short}, got {got}")


def require_config_fields(name: str, cfg) -> None:
    """For plumbing that cannot import notebook 02's Config (utils/gpu.py): a clear error unless
    `cfg` has its fields."""
    fields = ("d_model", "d_vocab", "n_ctx", "n_heads", "d_head", "d_mlp", "n_layers", "attn_only")
    if isinstance(cfg, type):  # the class: its defaults would pass for a config of GPT-2 small
        raise TypeError(
            f"{name} must be a Config such as model.cfg, got the class {cfg.__name__} itself "
            f"(call it: {cfg.__name__}(...))"
        )
    if not all(hasattr(cfg, field) for field in fields):
        raise TypeError(f"{name} must be a Config such as model.cfg, got {type(cfg).__name__}")


_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")


def check_training_args(args) -> None:
    """Notebook 03's TrainingArgs: each field's type and range, and a device this machine has."""
    w = "TrainingArgs"
    for name in (
        "batch_size",
        "max_steps",
        "eval_every",
        "eval_batches",
        "sample_every",
        "sample_tokens",
        "checkpoint_every",
    ):
        setattr(args, name, require_int(f"{w}.{name}", getattr(args, name)))
    args.warmup_steps = require_int(f"{w}.warmup_steps", args.warmup_steps, minimum=0)
    if args.warmup_steps > args.max_steps:
        raise ValueError(
            f"{w}.warmup_steps is {args.warmup_steps}, more than max_steps = {args.max_steps}: "
            f"the learning rate would never reach lr; use warmup_steps <= max_steps (a tenth of "
            f"the run is usual)"
        )
    seeds = "an int from 0 to 2**32 - 1"  # the epochs' shuffles derive their seeds from it
    args.seed = require_int(f"{w}.seed", args.seed, minimum=0, maximum=2**32 - 1, allowed=seeds)
    args.lr = require_number(f"{w}.lr", args.lr)
    args.min_lr_ratio = require_number(
        f"{w}.min_lr_ratio", args.min_lr_ratio, minimum=0, allow_minimum=True, maximum=1
    )
    args.weight_decay = require_number(
        f"{w}.weight_decay", args.weight_decay, minimum=0, allow_minimum=True
    )
    args.grad_clip = require_number(f"{w}.grad_clip", args.grad_clip)
    betas = args.betas
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(
            f"{w}.betas must be a pair (beta1, beta2) such as (0.9, 0.95), got {betas!r}"
        )
    pair = "a pair of numbers in [0, 1)"
    for beta in betas:
        if _is_bool(beta) or not isinstance(beta, numbers.Real):
            raise TypeError(f"{w}.betas must be {pair}, got {beta!r}")
        if not (math.isfinite(beta) and 0 <= beta < 1):
            raise ValueError(f"{w}.betas must be {pair}, got {beta!r}")
    args.betas = tuple(float(beta) for beta in betas)
    if not isinstance(args.sample_prompt, str) or not args.sample_prompt:
        raise ValueError(
            f"{w}.sample_prompt must be a non-empty string (sampling continues a prompt), "
            f"got {args.sample_prompt!r}"
        )
    if not isinstance(args.checkpoint_dir, (str, os.PathLike)) or not str(args.checkpoint_dir):
        raise TypeError(f"{w}.checkpoint_dir must be a folder path, got {args.checkpoint_dir!r}")
    args.checkpoint_dir = str(args.checkpoint_dir)
    for name in ("fused_adamw", "compile"):
        setattr(args, name, require_bool(f"{w}.{name}", getattr(args, name)))
    args.device = str(args.device)  # torch.device("cuda") works too
    if not _DEVICE.fullmatch(args.device):
        hint = " (for an NVIDIA GPU, 'cuda')" if args.device.lower() == "gpu" else ""
        raise ValueError(
            f"{w}.device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {args.device!r}{hint}"
        )
    if args.autocast not in (None, "bfloat16", "float16"):
        raise ValueError(
            f"{w}.autocast must be None, 'bfloat16' or 'float16', got {args.autocast!r}"
        )
    if args.autocast and not args.device.startswith("cuda"):
        raise ValueError(
            f"{w}.autocast={args.autocast!r} needs a CUDA device (device is {args.device!r}); "
            f"use None on a CPU"
        )
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"{w}.device is {args.device!r}, but PyTorch sees no CUDA GPU here; use device='cpu' "
            f"(in Colab: Runtime > Change runtime type > GPU)"
        )
    if args.device == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"{w}.device is 'mps', but this machine has no Apple GPU that PyTorch can use; "
            f"use device='cpu'"
        )
    micro = args.micro_batch_size
    if micro is not None:
        size = f"None or a positive int that divides batch_size = {args.batch_size}"
        if _is_bool(micro) or not isinstance(micro, numbers.Integral) or micro <= 0:
            raise ValueError(f"{w}.micro_batch_size must be {size}, got {micro!r}")
        if args.batch_size % micro:
            raise ValueError(f"{w}.micro_batch_size must be {size}, got {micro!r}")
        args.micro_batch_size = int(micro)


def require_training_args(where: str, args) -> None:
    """A clear error unless `args` is a TrainingArgs (not a dict, None or the class itself)."""
    if type(args).__name__ == "TrainingArgs" and hasattr(args, "checkpoint_every"):
        check_training_args(args)  # again: a field may have been set to a bad value since
        return
    hint = " (unpack it: TrainingArgs(**args))" if isinstance(args, Mapping) else ""
    hint = " (call it: TrainingArgs(...))" if isinstance(args, type) else hint
    raise TypeError(f"{where}: args must be a TrainingArgs, got {type(args).__name__}{hint}")


def check_model_and_args(where: str, model, args) -> None:
    """make_optimizer and validation_metrics: one of our models (any nn.Module with a Config as
    .cfg) with weights that can be read, and a TrainingArgs."""
    require_model(model, f"{where}: model")
    require_training_args(where, args)
    if where == "make_optimizer" and not any(p.requires_grad for p in model.parameters()):
        raise ValueError("make_optimizer: the model has no trainable parameter (requires_grad)")


def check_evaluation_data(model, sequences, args) -> None:
    """validation_metrics: the model, TrainingArgs, and at least one row of packed token ids."""
    check_model_and_args("validation_metrics", model, args)
    require_token_ids(sequences, model.cfg, name="sequences", check_values=True)
    if sequences.shape[1] < 2:
        raise ValueError(
            "validation_metrics: sequences must have two or more tokens per row (one has no next "
            f"token to predict), got shape {tuple(sequences.shape)}"
        )


def check_optimizer_step(model, optimizer, loss, grad_clip) -> None:
    """optimizer_step: a model, an optimizer, a scalar loss with its graph, a grad_clip > 0."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"optimizer_step: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            "optimizer_step: optimizer must be a torch optimizer (make_optimizer(model, args)), "
            f"got {type(optimizer).__name__}"
        )
    if not isinstance(loss, Tensor):
        hint = ": keep the tensor, not loss.item()" if isinstance(loss, numbers.Number) else ""
        raise TypeError(
            f"optimizer_step: loss must be the loss tensor, got {type(loss).__name__}{hint}"
        )
    if loss.ndim != 0 or not loss.is_floating_point():
        raise ValueError(
            f"optimizer_step: loss must be one float number (a 0-d tensor, the mean loss), got "
            f"{loss.dtype} of shape {tuple(loss.shape)}"
        )
    if loss.grad_fn is None and not loss.requires_grad:
        raise ValueError(
            "optimizer_step: loss has no graph to backpropagate through (computed under "
            "torch.no_grad(), detached, or from a model whose weights need no gradient)"
        )
    require_number("grad_clip", grad_clip)  # > 0: a negative one would flip the gradients


def check_not_replacing(trainer, path: Path) -> None:
    """Notebook 03's Trainer.save_checkpoint: a file already at `path` is an earlier run's (never
    replaced) unless this trainer wrote it (train() checks its steps before the first; this catches
    a save called directly). The paths a trainer wrote are kept on it, in _checkpoints_written."""
    written = trainer.__dict__.setdefault("_checkpoints_written", set())
    key = Path(path).resolve()
    if key not in written and Path(path).exists():
        raise FileExistsError(
            f"{path} is already there (an earlier run's?), and this trainer did not write it: "
            f"give another checkpoint_dir, or move the file away"
        )
    written.add(key)


def require_writable_now(checkpoint_dir) -> None:
    """Before the first step: make checkpoint_dir and write a file there (removed at once). What
    os.access cannot tell (root on /sys or /proc, some network and read-only mounts) fails now,
    in one line, not at the first save, after the steps before it."""
    folder = Path(checkpoint_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write_test_")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise PermissionError(
            f"checkpoint_dir {folder} cannot be written to ({error.strerror or error}): give "
            f"another checkpoint_dir"
        ) from None


def check_no_overwrite(trainer, end: int) -> None:
    """Notebook 03's Trainer.train: the step files it will save, every checkpoint_every steps and
    at `end`, must not be there already (an earlier run's). A trainer that saves elsewhere
    (SafeTrainer: a new run folder each time) is not asked. Either way checkpoint_dir must take a
    file now (require_writable_now)."""
    require_writable_now(trainer.args.checkpoint_dir)
    if type(trainer).save_checkpoint.__qualname__ != "Trainer.save_checkpoint":
        return
    every, folder = trainer.args.checkpoint_every, Path(trainer.args.checkpoint_dir)
    steps = [s for s in range(trainer.step + 1, end + 1) if s % every == 0 or s == end]
    there = [f"step_{s:06d}.pt" for s in steps if (folder / f"step_{s:06d}.pt").exists()]
    if there:
        raise FileExistsError(
            f"{folder} already holds {', '.join(there[:3])}{' ...' * (len(there) > 3)} (an "
            f"earlier run's?), which this training would overwrite: give another checkpoint_dir, "
            f"or move them away, or train with SafeTrainer, which saves each run in a new folder"
        )


def check_training_data(model, args, train_sequences, val_sequences, sample=None) -> None:
    """Clear errors for what a trainer is given, before anything is trained."""
    if sample is not None and not callable(sample):
        raise TypeError(
            f"sample must be None or a function of the model that returns a str, got "
            f"{type(sample).__name__}"
        )
    if sample is not None:
        require_one_argument("sample", sample, "the model")
    if not isinstance(model, torch.nn.Module) or type(getattr(model, "cfg", None)).__name__ != (
        "Config"
    ):
        raise TypeError(
            f"model must be a DemoTransformer (or FusedTransformer, or your own class with a "
            f"Config as .cfg), got {type(model).__name__}"
        )
    require_model(model)  # not on the meta device
    require_training_args("the trainer", args)  # checks its fields again: they may have changed
    check_writable(args.checkpoint_dir)  # a file or a read-only folder: now, not after training
    if model.cfg.n_ctx < 2:
        raise ValueError(
            f"model.cfg.n_ctx is {model.cfg.n_ctx}: a one-token sequence has no next token to "
            f"predict; training needs n_ctx >= 2"
        )
    for name, sequences in (("train_sequences", train_sequences), ("val_sequences", val_sequences)):
        require_token_ids(sequences, model.cfg, name=name, check_values=True, exact_posn=True)
    if args.batch_size > len(train_sequences):
        raise ValueError(
            f"TrainingArgs.batch_size is {args.batch_size}, more than the {len(train_sequences)} "
            f"training sequences"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has no trainable parameter (all have requires_grad=False)")


def require_model(model, what: str = "model") -> None:
    """A clear error unless `model` is one of our transformers: a module whose .cfg is a Config."""
    cfg = getattr(model, "cfg", None)
    if not isinstance(model, torch.nn.Module) or not all(
        hasattr(cfg, name) for name in ("n_ctx", "d_vocab", "n_layers")
    ):
        raise TypeError(
            f"{what} must be a DemoTransformer (or FusedTransformer, or your own class with a "
            f"Config as .cfg), got {type(model).__name__}"
        )
    weight = next(model.parameters(), None)
    if weight is not None and weight.device.type == "meta":
        raise ValueError(
            f"{what}'s weights are on the meta device (shapes without values): build it on 'cpu' "
            f"or 'cuda', or load real weights into it with load_state_dict(..., assign=True)"
        )


def require_cache_structure(model) -> None:
    """A clear error unless `model` is built as notebook 02's DemoTransformer, the structure that
    notebook 04's KV cache runs through (embed, pos_embed, blocks of ln1 and attn, ln_final,
    unembed)."""
    parts = ("embed", "pos_embed", "blocks", "ln_final", "unembed")
    missing = [part for part in parts if not hasattr(model, part)]
    if not missing and not all(hasattr(b, "attn") and hasattr(b, "ln1") for b in model.blocks):
        missing = ["blocks' attn and ln1"]
    if missing:
        raise TypeError(
            f"{type(model).__name__} has no {', '.join(missing)}, which the KV cache runs through "
            f"(it is built like notebook 02's DemoTransformer): pass use_cache=False"
        )
    bypassed = [("model", model), ("pos_embed", model.pos_embed)]
    for i, block in enumerate(model.blocks):
        bypassed += [(f"blocks.{i}", block), (f"blocks.{i}.attn", block.attn)]
    changed = [name for name, module in bypassed if _forward_replaced(module)]
    if changed:
        raise TypeError(
            f"the KV cache's path runs its own attention and block code, not the forward of "
            f"{', '.join(changed[:3])}, which is your own: pass use_cache=False"
        )


def _forward_replaced(module) -> bool:
    """Whether `module`'s forward is not the one of our class it is built on: set on the instance,
    or overridden by a subclass of one of ours. (A class of the learner's own, built as the
    notebooks teach and not on ours, keeps the cache.)"""
    if "forward" in vars(module):
        return True
    mro = type(module).__mro__
    owner = next((cls for cls in mro if "forward" in vars(cls)), None)
    ours = any(cls.__module__.startswith("utils.") for cls in mro)
    return ours and owner is not None and not owner.__module__.startswith("utils.")


def hooks_attached(model) -> list[str]:
    """The names of the modules of `model` with something attached: notebook 05's hook functions
    on a hook point, or PyTorch forward hooks. The KV cache's path does not run them."""
    attached = [
        name or type(model).__name__
        for name, module in model.named_modules()
        if (isinstance(getattr(module, "hooks", None), list) and module.hooks)
        or module._forward_hooks
        or module._forward_pre_hooks
    ]
    modules = torch.nn.modules.module  # hooks on every module: register_module_forward_hook
    if modules._global_forward_hooks or modules._global_forward_pre_hooks:
        attached.append("every module (register_module_forward_hook)")
    return attached


def require_prompt(model, tokens) -> None:
    """next_logits: one of our models and tokens [batch, posn] of int ids (any length: the last
    n_ctx are used)."""
    require_model(model)
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.shape[1] == 0:
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        hint = ": add a batch dimension, tokens[None]" if getattr(tokens, "ndim", 0) == 1 else ""
        raise ValueError(f"tokens must be token ids [batch, posn] with posn >= 1, got {got}{hint}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"tokens must be token ids (int64), got dtype {tokens.dtype}")


def _require_top_p(top_p, name: str = "top_p", allowed: str = "") -> float:
    mass = f"{allowed}a number in (0, 1] (the probability mass to keep)"
    if _is_bool(top_p) or not isinstance(top_p, numbers.Real):
        raise TypeError(f"{name} must be {mass}, got {top_p!r} ({type(top_p).__name__})")
    if not 0 < top_p <= 1:
        raise ValueError(f"{name} must be {mass}, got {top_p!r}")
    return float(top_p)


_UNSET = object()


def check_sampler(
    where: str, logits, *, temperature=_UNSET, k=_UNSET, p=_UNSET, tokens=None, penalty=_UNSET
) -> None:
    """Notebook 04's logit functions (apply_temperature, apply_top_k, apply_top_p,
    apply_frequency_penalty): logits [batch, d_vocab] of floats, and their own argument."""
    if not isinstance(logits, Tensor) or logits.ndim != 2 or not logits.is_floating_point():
        got = (
            f"{tuple(logits.shape)} {logits.dtype}"
            if isinstance(logits, Tensor)
            else type(logits).__name__
        )
        raise ValueError(f"{where}: logits must be floats [batch, d_vocab], got {got}")
    if temperature is not _UNSET:
        require_number(
            f"{where}: temperature",
            temperature,
            minimum=1e-4,
            allow_minimum=True,
            hint=" (temperature 0 is greedy: argmax, not a division)",
        )
    if k is not _UNSET:
        require_int(f"{where}: k", k)
    if p is not _UNSET:
        _require_top_p(p, f"{where}: p")
    if penalty is not _UNSET:
        require_number(f"{where}: penalty", penalty, minimum=-100, allow_minimum=True, maximum=100)
        batch, d_vocab = logits.shape
        if (
            not isinstance(tokens, Tensor)
            or tokens.dtype not in (torch.int64, torch.int32)
            or tokens.ndim != 2
            or tokens.shape[0] != batch
        ):
            got = (
                f"{tuple(tokens.shape)} {tokens.dtype}"
                if isinstance(tokens, Tensor)
                else type(tokens).__name__
            )
            raise ValueError(
                f"{where}: tokens must be token ids [batch={batch}, posn] (int64), one row per "
                f"row of logits, got {got}"
            )
        if tokens.device.type == "cpu" and tokens.numel():
            low, high = int(tokens.min()), int(tokens.max())
            if low < 0 or high >= d_vocab:
                raise ValueError(
                    f"{where}: tokens must be ids in [0, {d_vocab}) (the logits' d_vocab), "
                    f"got ids from {low} to {high}"
                )


def check_generate_args(
    model,
    tokens,
    max_new_tokens,
    temperature,
    top_k,
    top_p,
    frequency_penalty,
    stop_token,
    use_cache,
    seed,
) -> None:
    """Notebook 04's generate: clear errors, each naming the argument and what is allowed."""
    require_model(model)
    require_token_ids(tokens, model.cfg, name="tokens (the prompt)", check_values=True)
    max_new_tokens = require_int("max_new_tokens", max_new_tokens, minimum=0)
    batch, posn = tokens.shape
    _require_memory_for_ids(batch, posn + max_new_tokens, "batch", "posn + max_new_tokens")
    if temperature != 0 or _is_bool(temperature):
        require_number(
            "temperature", temperature, minimum=1e-4, allow_minimum=True, hint=" (or 0: greedy)"
        )
    if top_k is not None:
        require_int("top_k", top_k)
    if top_p is not None:
        _require_top_p(top_p, allowed="None or ")
    require_number(
        "frequency_penalty",
        frequency_penalty,
        minimum=-100,
        allow_minimum=True,
        maximum=100,
        hint=" (0: none)",
    )
    if stop_token is not None:
        require_token_id("stop_token", stop_token, model.cfg.d_vocab)
    require_bool("use_cache", use_cache)
    if use_cache:
        require_cache_structure(model)
    if use_cache and hooks_attached(model):
        raise ValueError(
            f"generate with the KV cache does not run hooks, and {hooks_attached(model)[:3]} have "
            f"some attached: pass use_cache=False to generate with them (ablations, patches), or "
            f"remove them first (model.reset_hooks() for hook functions, handle.remove() for "
            f"PyTorch's register_forward_hook)"
        )
    if seed is not None:
        require_int("seed", seed, minimum=0, maximum=2**63 - 1)


def check_beam_search_args(
    model, tokens, num_beams, max_new_tokens, length_penalty, no_repeat_ngram_size, stop_token
) -> None:
    """Notebook 04's beam_search: clear errors, each naming the argument and what is allowed."""
    require_model(model)
    require_token_ids(tokens, model.cfg, name="tokens (the prompt)", check_values=True)
    if tokens.shape[0] != 1:
        raise ValueError(
            f"beam_search continues one prompt: tokens must have shape [1, posn], got "
            f"{tuple(tokens.shape)}"
        )
    most = model.cfg.d_vocab // 2  # each step picks 2 * num_beams different candidates
    require_int("num_beams", num_beams, maximum=most, allowed=f"a positive int, at most {most}")
    max_new_tokens = require_int("max_new_tokens", max_new_tokens)
    # each of 2 * num_beams candidates holds every token so far
    posn = tokens.shape[1] + max_new_tokens
    _require_memory_for_ids(2 * num_beams, posn, "2 * num_beams", "posn + max_new_tokens")
    require_number(
        "length_penalty",
        length_penalty,
        minimum=-10,  # beyond, length ** length_penalty overflows or turns scores into -inf
        allow_minimum=True,
        maximum=10,
        hint=" (1: divide by the length)",
    )
    require_int("no_repeat_ngram_size", no_repeat_ngram_size, minimum=0)
    room = model.cfg.d_vocab - len(set(tokens[0].tolist()))  # tokens not yet in the prompt
    if no_repeat_ngram_size == 1 and max_new_tokens > room:
        raise ValueError(
            f"no_repeat_ngram_size=1 lets each of the {model.cfg.d_vocab} tokens occur once in a "
            f"text, so this prompt can grow by at most {room} tokens, not "
            f"max_new_tokens={max_new_tokens}"
        )
    if no_repeat_ngram_size == 1 and num_beams > room:  # fewer first tokens than beams: duplicates
        raise ValueError(
            f"no_repeat_ngram_size=1 leaves {room} tokens this prompt does not hold, too few for "
            f"num_beams={num_beams} different beams: use num_beams <= {room}"
        )
    if stop_token is not None:
        require_token_id("stop_token", stop_token, model.cfg.d_vocab)
    require_cache_structure(model)
    if hooks_attached(model):
        raise ValueError(
            f"beam_search runs the KV cache, which does not run hooks, and "
            f"{hooks_attached(model)[:3]} have some attached: remove them first "
            f"(model.reset_hooks())"
        )


def require_rows(rows, batch: int) -> None:
    """KVCache.reorder's rows: a 1-D int tensor of `batch` row ids, each in [0, batch) (the range
    read back only on the CPU, as for token ids)."""
    allowed = f"a 1-D tensor of {batch} row ids (int64), each in [0, {batch})"
    if not isinstance(rows, Tensor) or rows.dtype not in (torch.int64, torch.int32):
        what = f"dtype {rows.dtype}" if isinstance(rows, Tensor) else type(rows).__name__
        raise TypeError(f"cache.reorder(rows): rows must be {allowed}, got {what}")
    if tuple(rows.shape) != (batch,):
        raise ValueError(
            f"cache.reorder(rows): rows must be {allowed}, got shape {list(rows.shape)}"
        )
    if rows.device.type == "meta":  # no values at all: index_select would read whatever is there
        raise ValueError(
            f"cache.reorder(rows): rows must be {allowed}, got rows on the meta device"
        )
    if (
        rows.device.type == "cpu"
        and len(rows)
        and not (0 <= int(rows.min()) <= int(rows.max()) < batch)
    ):
        raise ValueError(f"cache.reorder(rows): rows must be {allowed}, got {rows.tolist()}")


def require_ngram_args(tokens, log_probs, n) -> int:
    """ban_repeated_ngrams: tokens [batch, posn] of int ids below d_vocab, log_probs [batch,
    d_vocab] of the same rows, on one device; n an int >= 0 (returned)."""
    n = require_int("n", n, minimum=0)
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        got = type(tokens).__name__
        if isinstance(tokens, Tensor):
            got = f"{tokens.dtype} {list(tokens.shape)}"
        raise TypeError(f"tokens must be int token ids [batch, posn], got {got}")
    if not isinstance(log_probs, Tensor) or log_probs.ndim != 2:
        got = list(log_probs.shape) if isinstance(log_probs, Tensor) else type(log_probs).__name__
        raise TypeError(f"log_probs must be [batch, d_vocab], got {got}")
    if tokens.shape[0] != log_probs.shape[0] or tokens.device != log_probs.device:
        raise ValueError(
            f"tokens ({tokens.shape[0]} rows, {tokens.device}) and log_probs ({log_probs.shape[0]} "
            f"rows, {log_probs.device}) must have the same rows, on one device"
        )
    if (
        tokens.device.type == "cpu"
        and tokens.numel()
        and not (0 <= int(tokens.min()) and int(tokens.max()) < log_probs.shape[1])
    ):
        raise ValueError(f"tokens must be ids in [0, {log_probs.shape[1]}) (log_probs' d_vocab)")
    return n


def require_cache_layer(cache, layer, where: str) -> None:
    """A layer index that the KVCache has: an int in [0, n_layers)."""
    n_layers = cache.cfg.n_layers
    if _is_bool(layer) or not isinstance(layer, numbers.Integral) or not 0 <= layer < n_layers:
        raise ValueError(f"{where}: layer must be an int in [0, {n_layers}), got {layer!r}")


def check_cache_update(cache, layer, k, v) -> None:
    """KVCache.update's layer (one of the model's) and keys (of the dtype already held: a model
    cast with .double() after the cache was filled needs a new cache)."""
    require_cache_layer(cache, layer, "cache.update(layer, ...)")
    if not isinstance(k, Tensor) or not isinstance(v, Tensor):
        raise TypeError(
            f"cache.update(layer, k, v): k and v must be tensors, got {type(k).__name__} and "
            f"{type(v).__name__}"
        )
    if not k.is_floating_point():
        raise TypeError(
            f"cache.update(layer, k, v): k and v must be the keys and values a layer computed "
            f"(floats), got dtype {k.dtype}"
        )
    if (v.dtype, v.device) != (k.dtype, k.device):
        raise ValueError(
            f"cache.update(layer, k, v): k is {k.dtype} on {k.device}, v {v.dtype} on {v.device}: "
            "give both of one dtype, on one device"
        )
    held = cache._keys[layer]
    if held is not None and cache._lengths[layer] and held.dtype != k.dtype:
        raise ValueError(
            f"cache.update: the cache holds {held.dtype} keys, these are {k.dtype} (the model "
            f"changed dtype?): make a new cache, or cache.reset(), after changing the model"
        )
    if held is not None and cache._lengths[layer] and held.device != k.device:
        raise ValueError(
            f"cache.update: the cache holds keys on {held.device}, these are on {k.device} (the "
            f"model moved?): make a new cache, or cache.reset(), after moving the model"
        )


class _CacheOwner:
    """The model a KVCache was filled by (called, it returns the model, as a weakref does), and a
    record of its weights then: each parameter's storage and version, and a few of its values.
    The values catch what leaves the version alone (fused and foreach optimizers, edits through
    .data); reading ~9 values per parameter costs about 5% of a generated token at `ci`'s shape.
    A cache used from your own code (not from inside generate or beam_search, whose loops change
    no weight) is also checked against the sums of every row and column of the weights its keys
    and values came from, so that one element edited through .data or .numpy() is seen too."""

    def __init__(self, model: torch.nn.Module, thorough: bool = True):
        self._ref = weakref.ref(model)
        # unembedding and final LayerNorm act on new positions only: no cached key uses them;
        # of the embedding, only the rows of the tokens cached (remember()), not all d_vocab
        named = dict(model.named_parameters())
        self._embed = named.get("embed.W_E")
        keyed = {id(p) for n, p in named.items() if not n.startswith(("unembed.", "ln_final."))}
        # where each parameter sits: a parameter replaced there (assign=True loads) is a change
        self._slots = [
            (module, name, param)
            for module in model.modules()
            for name, param in module._parameters.items()
            if param is not None and id(param) in keyed
        ]
        self._params = [param for _, _, param in self._slots]
        self._meta = self._metadata(self._params)
        with torch.no_grad():  # views: they see later edits of the same storage
            self._views = [p.detach().reshape(-1)[:: p.numel() // 8 + 1] for p in self._params]
            self._values = self._sample()
        self._keyed = [p for p in self._params if p is not self._embed]
        self._sums = self._row_and_column_sums() if thorough else None
        self._embed_ids = self._embed_rows = None

    def __call__(self):
        return self._ref()

    @staticmethod
    def _metadata(params) -> tuple:
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)

    def _sample(self) -> Tensor | None:
        if not self._views:
            return None
        if len({view.dtype for view in self._views}) > 1:  # one cat needs one dtype
            return torch.cat([view.to(torch.float64) for view in self._views])
        return torch.cat(self._views)

    @torch.no_grad()
    def _row_and_column_sums(self) -> list[Tensor]:
        """Each weight seen as [rows, last dimension]: its column sums and its row sums, in at
        least float32. One element changed changes both; rows or heads swapped, the row sums."""
        sums = []
        for p in self._keyed:
            rows = p.detach().reshape(-1, p.shape[-1]) if p.dim() else p.detach().reshape(1, 1)
            dtype = torch.promote_types(p.dtype, torch.float32)
            sums += [rows.sum(0, dtype=dtype), rows.sum(1, dtype=dtype)]
        return sums

    def changed_at(self, length: int, thorough: bool = True) -> bool:
        """changed(), once per cache length: cached_forward and the cache's own check both ask at
        the same step, and nothing can change the weights between the two. `thorough`: the row
        and column sums too (a cache used from your code, between steps of which anything goes)."""
        if getattr(self, "_checked_at", None) == length:
            return False
        changed = self.changed() or (thorough and self._sums_changed())
        self._checked_at = None if changed else length  # a refusal is given again, every time
        return changed

    @torch.no_grad()
    def remember(self, tokens: Tensor, length: int) -> None:
        """The embedding's rows of the tokens about to be cached after `length` positions, as
        they are now (once per length: the two checks of one step give the same tokens)."""
        if self._sums is None or self._embed is None or self._embed.dim() != 2:
            return
        if getattr(self, "_remembered_at", None) == length:
            return
        self._remembered_at = length
        ids = tokens.reshape(-1).unique().to(self._embed.device)
        rows = self._embed.detach().index_select(0, ids)
        if self._embed_ids is not None:
            ids, rows = torch.cat([self._embed_ids, ids]), torch.cat([self._embed_rows, rows])
        self._embed_ids, self._embed_rows = ids, rows

    @torch.no_grad()
    def _sums_changed(self) -> bool:
        if self._sums is None:  # filled inside generate or beam_search: no one else holds it
            return False
        pairs = list(zip(self._sums, self._row_and_column_sums()))
        if self._embed_ids is not None:
            pairs.append((self._embed_rows, self._embed.detach().index_select(0, self._embed_ids)))
        return not all(_same_values(before, now) for before, now in pairs)

    def changed(self) -> bool:
        """Run before every cached step: cheap checks (no walk over the model's modules)."""
        if any(module._parameters.get(name) is not param for module, name, param in self._slots):
            return True
        if self._metadata(self._params) != self._meta:
            return True
        if self._values is None:
            return False
        with torch.no_grad():
            return not _same_values(self._values, self._sample())


def _same_values(before: Tensor, now: Tensor) -> bool:
    """Equal, element by element, NaN included (NaN != NaN)."""
    if torch.equal(before, now):
        return True
    return bool(((before == now) | (before.isnan() & now.isnan())).all())


class StaleCacheError(ValueError):
    """A KV cache given tokens other than those whose keys and values it holds."""


def check_cache_holds(cache, tokens) -> None:
    """next_logits with a cache: `tokens` (all the tokens so far) must begin with the tokens the
    cache holds the keys and values of (not another prompt's), and go past them."""
    held = cache.start + cache.length
    if held >= tokens.shape[1]:
        raise ValueError(
            f"the cache already holds all {tokens.shape[1]} tokens given; pass the tokens so far, "
            f"new ones included"
        )
    record = getattr(
        cache, "_tokens", None
    )  # written by check_cache_use (a KVCache of yours: none)
    if record is None or not cache.length or record.shape[0] != tokens.shape[0]:
        return
    given = tokens[:, cache.start : held].to(record.device, record.dtype)
    if not torch.equal(record[:, : cache.length], given):
        raise StaleCacheError(
            f"this cache holds the keys and values of other tokens than the first {held} given "
            f"(another prompt's, or rows re-chosen without cache.reorder(rows)?): for new tokens "
            f"make a new cache, KVCache(model.cfg, batch), or cache.reset()"
        )


def _record_tokens(cache, tokens) -> None:
    """Keep the token ids whose keys and values the cache is about to hold (check_cache_holds)."""
    if not hasattr(cache, "_tokens"):  # a KVCache of your own: it keeps no record
        return
    record = cache._tokens
    if record is None or record.shape[0] != tokens.shape[0] or record.device != tokens.device:
        shape = (tokens.shape[0], cache.cfg.n_ctx)
        record = cache._tokens = torch.zeros(shape, dtype=torch.int64, device=tokens.device)
    record[:, cache.length : cache.length + tokens.shape[1]] = tokens


def _inside_sampling_loop(cache) -> bool:
    """Whether this cache is the one notebook 04's generate or beam_search made and holds (in
    utils.sampling, or the notebook's own cells): their loops change no weight between two steps,
    so the row and column sums need not be read at every token."""
    frame = sys._getframe(1)
    for _ in range(12):  # check_cache_use < cached_forward < next_logits < generate, and wrappers
        if frame is None:
            return False
        if frame.f_code.co_name in ("generate", "beam_search") and (
            frame.f_locals.get("cache") is cache
        ):
            return True
        frame = frame.f_back
    return False


def check_cache_use(cache, tokens, model) -> None:
    """Notebook 04's forward_with_cache: `tokens` [batch, new_posn] must fit the cache, and the
    cache must hold the keys and values of this very model. The first model to use a cache (after
    it was made or reset) owns it."""
    if not (hasattr(cache, "cfg") and hasattr(cache, "_lengths")):
        raise TypeError(f"cache must be a KVCache(model.cfg, batch), got {type(cache).__name__}")
    if isinstance(model, torch.nn.Module) or model is None:
        require_model(model)
        weight = next(model.parameters(), None)
        device = None if weight is None else weight.device
        require_token_ids(tokens, model.cfg, name="tokens", device=device)
    cfg = model.cfg if isinstance(model, torch.nn.Module) else model
    if isinstance(model, torch.nn.Module):
        require_built_with(model)
        if hooks_attached(model):  # the cached path skips most hook points: never silently
            raise ValueError(
                f"the KV cache's path does not run hooks, and {hooks_attached(model)[:3]} have "
                f"some attached: run the model without a cache (use_cache=False in generate, "
                f"cache=None in next_logits), or remove them first (model.reset_hooks(), or "
                f"handle.remove() for PyTorch's register_forward_hook)"
            )
    if cfg != cache.cfg:
        raise ValueError(
            f"this cache was made for another model's config ({cache.cfg}); make one with "
            f"KVCache(model.cfg, batch)"
        )
    if isinstance(model, torch.nn.Module):
        inside_loop = _inside_sampling_loop(cache)
        if cache._model is None:
            cache._model = _CacheOwner(model, thorough=not inside_loop)
        elif cache._model() is not model:
            raise ValueError(
                "this cache holds the keys and values of another model (the same config is not "
                "enough: other weights, other keys); make one for this model, "
                "KVCache(model.cfg, batch), or cache.reset() first"
            )
        elif (
            cache.length
            and isinstance(cache._model, _CacheOwner)
            and cache._model.changed_at(cache.length, thorough=not inside_loop)
        ):
            raise ValueError(
                "the model's weights have changed since this cache was filled (trained, loaded, "
                "cast or edited): the keys and values it holds are the old weights'; "
                "cache.reset() and run the whole sequence again (generate does this for you)"
            )
    if tokens.shape[0] != cache.batch:
        raise ValueError(
            f"tokens has {tokens.shape[0]} rows, but this cache was made for batch = {cache.batch}"
        )
    if cache.length + tokens.shape[1] > cfg.n_ctx:
        raise ValueError(
            f"the cache holds {cache.length} positions, and {tokens.shape[1]} more would pass "
            f"n_ctx = {cfg.n_ctx}: start again on the last n_ctx tokens (cache.reset(), then the "
            f"whole window; next_logits does this)"
        )
    _record_tokens(cache, tokens)
    if isinstance(getattr(cache, "_model", None), _CacheOwner):
        cache._model.remember(tokens, cache.length)


# notebook 05's analysis functions (utils/circuits.py)
_NOT_GIVEN = object()  # an argument not given at all, told from one given as None


def require_cache(cache, layer=_NOT_GIVEN) -> None:
    """A clear TypeError/ValueError unless `cache` is run_with_cache's ActivationCache and `layer`
    (if given) one of its model's."""
    if type(cache).__name__ != "ActivationCache" or not hasattr(cache, "activations"):
        raise TypeError(
            "cache must be the ActivationCache from "
            f"`logits, cache = model.run_with_cache(tokens)`, got {type(cache).__name__}"
        )
    n_layers = cache.model.cfg.n_layers
    if layer is not _NOT_GIVEN and (
        not _is_index(layer) or not -n_layers <= operator.index(layer) < n_layers
    ):
        raise ValueError(
            f"layer must be an int from {-n_layers} to {n_layers - 1} "
            f"(the model has {n_layers} blocks), got {layer!r}"
        )


def require_pattern(pattern, seq_len=_NOT_GIVEN) -> None:
    """A clear TypeError/ValueError unless `pattern` is attention patterns
    [batch, n_heads, posn, posn] (and, with seq_len, of BOS, r, r: posn = 2 * seq_len + 1)."""
    if (
        not isinstance(pattern, Tensor)
        or pattern.ndim != 4
        or pattern.shape[-1] != pattern.shape[-2]
    ):
        shape = tuple(pattern.shape) if isinstance(pattern, Tensor) else type(pattern).__name__
        raise ValueError(
            "pattern must be attention patterns [batch, n_heads, query_posn, key_posn], "
            "such as cache['pattern', 0] "
            f"(a single sequence's too: pattern[None]), got {shape}"
        )
    if not pattern.is_floating_point():
        raise TypeError(
            f"pattern must hold attention weights (floats between 0 and 1), got dtype "
            f"{pattern.dtype}"
        )
    if pattern.shape[-1] < 2:
        raise ValueError(
            "pattern covers one position, which has no previous token: give patterns over at "
            "least two positions"
        )
    if pattern.shape[0] == 0 or pattern.shape[1] == 0:  # a mean over no sequences is NaN
        raise ValueError(
            f"pattern holds no sequences or no heads (shape {tuple(pattern.shape)}): give the "
            f"patterns of at least one sequence, pattern[None] for a single one"
        )
    if seq_len is not _NOT_GIVEN:
        seq_len = require_int("seq_len", seq_len)
        if pattern.shape[-1] != 2 * seq_len + 1:
            raise ValueError(
                f"pattern has {pattern.shape[-1]} positions but seq_len={seq_len} means BOS "
                f"and the tokens twice: 2 * {seq_len} + 1 = {2 * seq_len + 1}; "
                "give the length of one copy of the repeated tokens"
            )


def require_attribution(vectors, scale, model, token) -> None:
    """A clear TypeError/ValueError unless vectors are [..., d_model], scale one number or one per
    vector, and token one of the model's token ids."""
    if not (isinstance(model, torch.nn.Module) and hasattr(getattr(model, "cfg", None), "d_model")):
        raise TypeError(
            "model must be your model (a HookedDemoTransformer or DemoTransformer), "
            f"got {type(model).__name__}"
        )
    require_model(model)  # not on the meta device
    refuse_meta("vectors", vectors)
    refuse_meta("scale", scale)
    cfg = model.cfg
    if (
        not isinstance(vectors, Tensor)
        or vectors.ndim == 0
        or vectors.shape[-1] != cfg.d_model
        or not vectors.is_floating_point()
    ):
        shape = tuple(vectors.shape) if isinstance(vectors, Tensor) else type(vectors).__name__
        raise ValueError(
            f"vectors must be residual-stream vectors [..., d_model={cfg.d_model}], got {shape}"
        )
    weight = model.unembed.W_U if hasattr(model, "unembed") else None
    if weight is not None and vectors.dtype != weight.dtype:
        raise TypeError(
            f"vectors are {vectors.dtype}, the model's weights {weight.dtype}: give vectors of the "
            f"model's dtype, vectors.to({weight.dtype})"
        )
    if vectors.device.type == "meta" or isinstance(scale, Tensor) and scale.device.type == "meta":
        raise ValueError(
            "vectors and scale are on the meta device (shapes without values): use the ones "
            "run_with_cache returns for a model with real weights"
        )
    one_per_vector = (*vectors.shape[:-1], 1)
    if (
        not isinstance(scale, (Tensor, numbers.Real))
        or _is_bool(scale)
        or isinstance(scale, Tensor)
        and (
            scale.ndim > len(one_per_vector)
            or any(s not in (1, v) for s, v in zip(reversed(scale.shape), reversed(one_per_vector)))
            # [..., batch, posn, d_model] vectors take the whole [batch, posn, 1] of cache["scale"]:
            # one row's [posn, 1] would be broadcast over every row
            or vectors.ndim >= 3
            and scale.numel() > 1
            and scale.ndim < 3
        )
    ):
        shape = tuple(scale.shape) if isinstance(scale, Tensor) else type(scale).__name__
        one_row = (
            " (for one row's vectors, [comp, posn, d_model], the row's scale with a leading 1, "
            "cache['scale'][b][None]: a [posn, 1] could be one row's given for every row)"
            if isinstance(scale, Tensor)
            and vectors.ndim >= 3
            and 1 < scale.numel()
            and scale.ndim < 3
            else ""
        )
        raise ValueError(
            "scale must be ln_final's scale where the vectors were read: one number, "
            f"cache['scale'][b, posn, 0], or one per vector, shape {one_per_vector}; "
            f"got {shape} for vectors of shape {tuple(vectors.shape)}{one_row}"
        )
    values = scale if isinstance(scale, Tensor) else torch.tensor(float(scale))
    # LayerNorm's scale is sqrt(variance + eps): never below sqrt(eps) (a tinier one overflows)
    smallest = math.sqrt(model.cfg.layer_norm_eps) * (1 - 1e-3) if hasattr(model, "cfg") else 0
    if not bool(((values >= smallest) & (values > 0) & values.isfinite()).all()):
        raise ValueError(
            "scale must be ln_final's scale, the (positive, finite) size of the residual vector "
            f"the vectors were read from, at least sqrt(layer_norm_eps) = {smallest:.3g}: "
            f"cache['scale'][b, posn, 0]; got {scale!r}"[:300]
        )
    is_id = (
        isinstance(token, numbers.Integral)
        and not _is_bool(token)
        or isinstance(token, Tensor)
        and token.ndim == 0
        and not (token.is_floating_point() or token.dtype == torch.bool)
    )
    if not is_id or not 0 <= int(token) < cfg.d_vocab:
        raise ValueError(
            f"token must be one token id, an int in [0, {cfg.d_vocab}) (d_vocab), got {token!r}"
        )


def require_heads(model, heads) -> None:
    """A clear TypeError/ValueError unless `model` has hook points and `heads` is a list of
    (layer, head) pairs of its heads."""
    if not (isinstance(model, torch.nn.Module) and hasattr(model, "hook_points")):
        raise TypeError(
            "model must be a HookedDemoTransformer (it has the hook points), "
            f"got {type(model).__name__}; for a model "
            f"you have: HookedDemoTransformer.from_model(model)"
        )
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    pairs = isinstance(heads, (list, tuple)) and all(
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(i, numbers.Integral) and not _is_bool(i) for i in pair)
        for pair in heads
    )
    if not pairs or any(
        not (0 <= layer < n_layers and 0 <= head < n_heads) for layer, head in heads
    ):
        raise ValueError(
            f"heads must be a list of (layer, head) pairs with layer in [0, {n_layers}) "
            f"and head in [0, {n_heads}), "
            f"e.g. [(1, 0)] or [(0, 2), (1, 3)]; got {heads!r}"
        )


# notebook 00's warm-up (utils/warmup.py)
def require_float_tensor(name: str, value) -> None:
    """A floating-point tensor: an integer one cannot move by a small eps (x + 1e-3 rounds back
    to x), so every finite difference of it would be 0."""
    if not isinstance(value, Tensor) or not value.is_floating_point():
        got = value.dtype if isinstance(value, Tensor) else type(value).__name__
        raise TypeError(
            f"{name} must be a floating-point tensor (float32 or float64), got {got}: "
            "torch.tensor([1, 2]) is int64, torch.tensor([1.0, 2.0]) is float32"
        )


# notebook 06's data parallelism (utils/scaling.py)
def require_rows_split(rows, rank, world_size) -> None:
    """rows_for_rank: a 1-D tensor of row ids, a world size that divides their number (every rank
    takes the same share), and a rank of that world."""
    if (  # bool rows would index as a mask
        not isinstance(rows, Tensor)
        or rows.dim() != 1
        or rows.is_floating_point()
        or rows.dtype == torch.bool
    ):
        got = type(rows).__name__
        if isinstance(rows, Tensor):
            got = f"shape {tuple(rows.shape)}, dtype {rows.dtype}"
        raise TypeError(
            f"rows must be a 1-D tensor of integer row ids (batch_rows' result), got {got}"
        )
    world_size = require_int("world_size", world_size, minimum=1)
    require_int("rank", rank, minimum=0, maximum=world_size - 1)
    if len(rows) % world_size:
        raise ValueError(
            f"{len(rows)} rows do not split evenly over {world_size} ranks: every rank must take "
            "the same number, or the averaged gradient weights some rows more"
        )


def require_rank_value(value) -> None:
    """mean_over_ranks: a tensor, in a process group that torch.distributed has set up."""
    if not isinstance(value, Tensor):
        raise TypeError(
            f"value must be a tensor, such as loss.detach(), got {type(value).__name__}"
        )
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError(
            "mean_over_ranks needs the processes of a run: call it in a script that torchrun "
            "started, after torch.distributed.init_process_group (utils.distributed does both)"
        )


def require_micro_batches(ddp_model, micro_batches, loss_fn):
    """backward_micro_batches: a DDP model (its no_sync, when there are two micro-batches or
    more), a non-empty list (or tuple) of tensors and loss_fn(output, micro_batch). Returns
    loss_fn wrapped so that a loss that is not one number with a graph fails in one line, not
    in backward()."""
    if not isinstance(micro_batches, (list, tuple)) or not micro_batches:
        got = (
            f"a tensor of shape {tuple(micro_batches.shape)}"
            if isinstance(micro_batches, Tensor)
            else f"{micro_batches!r:.60}"
        )
        raise ValueError(
            f"micro_batches must be a non-empty list of tensors (batch.split(size)), got {got}"
        )
    if not all(isinstance(m, Tensor) and m.dim() >= 1 for m in micro_batches):
        raise TypeError(
            "micro_batches must hold tensors of rows (at least 1-D), one micro-batch each"
        )
    sizes = sorted({len(m) for m in micro_batches})
    if len(sizes) > 1:
        raise ValueError(
            f"micro_batches hold {' and '.join(map(str, sizes))} rows: each micro-batch's loss "
            f"counts 1/n, so they must be of one size (a micro-batch size that divides the batch)"
        )
    if len(micro_batches) > 1 and not hasattr(ddp_model, "no_sync"):
        raise TypeError(
            f"ddp_model must be wrapped in DistributedDataParallel (its no_sync skips the "
            f"all-reduce), got {type(ddp_model).__name__}; DDP(model) under torchrun"
        )
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a function loss_fn(output, micro_batch), got {type(loss_fn).__name__}"
        )

    @functools.wraps(loss_fn)
    def one_number_loss(output, micro_batch):
        loss = loss_fn(output, micro_batch)
        if not isinstance(loss, Tensor) or loss.shape != () or not loss.is_floating_point():
            got = (
                f"a tensor of shape {tuple(loss.shape)}, {str(loss.dtype).removeprefix('torch.')}"
                if isinstance(loss, Tensor)
                else f"{type(loss).__name__} {loss!r:.40}"
            )
            raise ValueError(
                f"loss_fn must return the micro-batch's loss as one number (a 0-d float tensor, "
                f"a mean such as .mean()), got {got}"
            )
        if not loss.requires_grad:
            raise ValueError(
                "loss_fn returned a loss without a graph back to the model's weights (detached, "
                ".item(), or computed under torch.no_grad()): return the loss tensor itself"
            )
        return loss

    return one_number_loss


# notebook 07's activation patching (utils/patching.py)
def require_patching(model, clean_tokens, corrupted_tokens, metric) -> None:
    """A hooked model, clean and corrupted token ids of one shape [batch, posn] (the same positions
    in both runs), and a metric: a function of the logits that gives a number."""
    require_heads(model, [])  # a HookedDemoTransformer
    for name, tokens in (("clean_tokens", clean_tokens), ("corrupted_tokens", corrupted_tokens)):
        require_token_ids(tokens, model.cfg, name=name, check_values=True)
    if clean_tokens.shape != corrupted_tokens.shape:
        raise ValueError(
            f"clean_tokens {tuple(clean_tokens.shape)} and corrupted_tokens "
            f"{tuple(corrupted_tokens.shape)} must have one shape: a patch moves an activation "
            "to the same position of the other run"
        )
    if not callable(metric):
        raise TypeError(
            f"metric must be a function of the logits that returns a number, got {metric!r}"
        )
    require_one_argument("metric", metric, "the logits")
    with torch.no_grad():  # one run, so that a metric of the wrong kind fails here, in one line
        value = metric(model(clean_tokens))
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if _is_bool(value) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        got = (
            f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else repr(value)
        )
        raise TypeError(
            "metric(logits) must return one finite number (a float, or a one-element tensor: "
            f"reduce it with .mean()), got {got} for the clean run"
        )


def require_head_of(model, layer, head) -> None:
    """ov_circuit: an explicit model (W_E, per-head W_V and W_O, W_U) and the ints of one of its
    heads: a bool, a slice or a float would pick some other part of the weights silently."""
    weights_of = "model.embed.W_E, model.blocks[layer].attn.W_V and W_O, model.unembed.W_U"
    try:
        n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
        attn = model.blocks[0].attn
        parts = (model.embed.W_E, attn.W_V, attn.W_O, model.unembed.W_U)
    except (AttributeError, TypeError, IndexError):
        raise TypeError(
            f"model must be notebook 02's model, with {weights_of}; got {type(model).__name__}"
        ) from None
    if not all(isinstance(part, Tensor) for part in parts) or attn.W_V.dim() != 3:
        raise TypeError(
            f"model must hold per-head weights, W_V [n_heads, d_model, d_head] ({weights_of}); "
            f"{type(model).__name__}'s are not"
        )
    require_int("layer", layer, minimum=0, maximum=n_layers - 1)
    require_int("head", head, minimum=0, maximum=n_heads - 1)


def require_circuit(circuit) -> None:
    """copying_score: a square 2-D tensor of finite numbers, [n, n] (row t: what token t does to
    each logit)."""
    if (
        not isinstance(circuit, Tensor)
        or circuit.dim() != 2
        or circuit.shape[0] != circuit.shape[1]
    ):
        got = (
            f"shape {tuple(circuit.shape)}"
            if isinstance(circuit, Tensor)
            else type(circuit).__name__
        )
        raise ValueError(
            f"circuit must be a square [n, n] tensor, such as ov_circuit(model, layer, head) "
            f"([d_vocab, d_vocab]); got {got}"
        )
    refuse_meta("circuit", circuit)
    if circuit.numel() == 0 or not torch.isfinite(circuit).all():
        raise ValueError("circuit must be non-empty and finite (no nan or inf)")


def require_composition_args(W_A, W_B) -> None:
    """composition_score: two 2-D tensors that chain (W_A's columns are W_B's rows), both finite
    and nonzero (the score divides by their norms)."""
    for name, W in (("W_A", W_A), ("W_B", W_B)):
        if not isinstance(W, Tensor) or W.dim() != 2:
            got = f"shape {tuple(W.shape)}" if isinstance(W, Tensor) else type(W).__name__
            raise ValueError(f"{name} must be a 2-D tensor, such as [d_model, d_model]; got {got}")
        refuse_meta(name, W)
        if not W.is_floating_point():
            raise TypeError(f"{name} must hold weights (floats), got dtype {W.dtype}")
        if not torch.isfinite(W).all() or not W.any():
            raise ValueError(
                f"{name} must be finite and not all zeros (the score divides by its norm)"
            )
    if W_A.shape[1] != W_B.shape[0]:
        raise ValueError(
            f"W_A {tuple(W_A.shape)} and W_B {tuple(W_B.shape)} do not chain: W_A @ W_B needs "
            "W_A's columns to be W_B's rows"
        )
    if W_A.dtype != W_B.dtype or W_A.device != W_B.device:
        raise TypeError(
            f"W_A ({W_A.dtype}, {W_A.device}) and W_B ({W_B.dtype}, {W_B.device}) must have one "
            "dtype and device: W_B.to(W_A)"
        )


def require_effect_args(value, clean, corrupted) -> None:
    """patch_effect: three finite numbers (or one-element tensors), the clean and corrupted runs'
    different."""
    given = {"value": value, "clean": clean, "corrupted": corrupted}
    for name, number in given.items():
        refuse_meta(name, number)
        if isinstance(number, Tensor) and number.numel() == 1:
            number = number.item()
        given[name] = require_number(name, number, minimum=None)
    if given["clean"] == given["corrupted"]:
        raise ValueError(
            f"clean and corrupted are both {given['clean']!r}: the corruption changed nothing "
            "this metric sees, so no patch can restore anything; choose another corruption or "
            "metric"
        )


# notebook 01's BPETokenizer (utils/bpe.py)
def _is_index(value) -> bool:
    """An integer, numpy's and 0-d tensors included; not a bool (True would count as 1), nor a
    float."""
    try:
        operator.index(value)
    except TypeError:
        return False
    return not _is_bool(value)


def require_merge_args(word, pair, new_id) -> None:
    """merge_word(word, pair, new_id): a list (or tuple) of token ids, a pair of two ids and an id.
    O(1): train_merges calls it for every word a merge touches."""
    if not isinstance(word, (list, tuple)):
        hint = (
            " (pretokenize gives strs: turn each into its byte ids first)"
            if isinstance(word, (str, bytes))
            else ""
        )
        raise TypeError(
            f"merge_word: word must be a list of token ids, got {type(word).__name__}{hint}"
        )
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(map(_is_index, pair))):
        raise TypeError(f"merge_word: pair must be two token ids, such as (104, 101), got {pair!r}")
    if not _is_index(new_id):
        raise TypeError(f"merge_word: new_id must be an int token id, got {new_id!r}")
    if min(operator.index(pair[0]), operator.index(pair[1]), operator.index(new_id)) < 0:
        raise ValueError(f"merge_word: token ids are >= 0, got pair {pair!r} and new_id {new_id!r}")


def check_bpe_parts(vocab, merges, special_tokens, byte_tokens) -> None:
    """BPETokenizer(vocab, merges, special_tokens): a clear error unless vocab maps token strings to
    distinct int ids, holding every byte token and special token, and merges is a sequence of
    pairs of token strings whose join is in vocab."""
    if not isinstance(vocab, Mapping):
        raise TypeError(
            "BPETokenizer: vocab must be a dict from token string to id, "
            f"got {type(vocab).__name__}"
        )
    if not all(isinstance(tok, str) and _is_index(i) for tok, i in vocab.items()):
        raise TypeError("BPETokenizer: vocab must map token strings to int ids")
    ids = [operator.index(i) for i in vocab.values()]  # numpy's and 0-d tensors as ints
    if len(set(ids)) != len(vocab):
        raise ValueError("BPETokenizer: vocab gives two tokens the same id")
    if any(i < 0 for i in ids):
        raise ValueError("BPETokenizer: vocab's ids must be >= 0 (they index the embedding)")
    if not isinstance(special_tokens, (tuple, list)) or not all(
        isinstance(tok, str) for tok in special_tokens
    ):
        raise TypeError(
            f"BPETokenizer: special_tokens must be a tuple of str, got {special_tokens!r}"
        )
    if "" in special_tokens:
        raise ValueError(
            "BPETokenizer: a special token cannot be the empty string (it would match between "
            "every two characters)"
        )
    missing = [tok for tok in (*byte_tokens, *special_tokens) if tok not in vocab]
    if missing:
        raise ValueError(
            f"BPETokenizer: vocab lacks {missing[:3]}"
            f"{' and more' if len(missing) > 3 else ''}; "
            "it must hold the 256 byte tokens and every special token in "
            f"special_tokens={tuple(special_tokens)!r} (or pass special_tokens=())"
        )
    if isinstance(merges, (str, bytes)) or not isinstance(merges, (list, tuple)):
        raise TypeError(
            f"BPETokenizer: merges must be a list of pairs of token strings, got {merges!r:.60}"
        )
    for k, pair in enumerate(merges):
        if not (
            isinstance(pair, (tuple, list))
            and len(pair) == 2
            and all(isinstance(p, str) for p in pair)
            and pair[0] + pair[1] in vocab
        ):
            raise ValueError(
                f"BPETokenizer: merges[{k}] = {pair!r} must be a pair of token strings "
                "whose join is in vocab"
            )


def require_special_token(token: str, special_tokens: dict) -> None:
    if token not in special_tokens:
        raise ValueError(
            f"this tokenizer has no {token} token (it was built with special_tokens="
            f"{tuple(special_tokens)}); build it with special_tokens=({token!r},) to have one"
        )


def require_text(expects: str, text) -> str:
    """`text` as a str that UTF-8 can encode (no lone surrogates), or a clear error that starts
    with `expects` ("encode expects", "BPETokenizer.train: text must be")."""
    if not isinstance(text, str):
        hint = "; decode bytes first (bytes.decode('utf-8'))" if isinstance(text, bytes) else ""
        raise TypeError(f"{expects} a str, got {type(text).__name__}{hint}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"text is not valid Unicode (a lone surrogate at index {err.start}); "
            "it cannot be encoded as UTF-8"
        ) from None
    return text


def require_vocab_size(vocab_size) -> int:
    """BPETokenizer.train's vocab_size: an int >= 257 (256 bytes + <|endoftext|>)."""
    if not _is_index(vocab_size):  # numpy integers are fine; True, 300.0 and "300" are not
        raise TypeError(
            f"BPETokenizer.train: vocab_size must be an int, got {vocab_size!r} "
            f"({type(vocab_size).__name__})"
        )
    vocab_size = operator.index(vocab_size)
    if vocab_size < 257:
        raise ValueError(
            "BPETokenizer.train: vocab_size must be an int >= 257 "
            f"(256 bytes + <|endoftext|>), got {vocab_size}"
        )
    return vocab_size


def require_id_list(ids, id_to_token: dict | None) -> list[int]:
    """BPETokenizer.decode's ids (a list of ints, or a 1-D tensor or array) as a list of ints that
    are token ids of the vocabulary (any ints when id_to_token is None), or a clear error."""
    refuse_meta("ids", ids)
    shape = getattr(ids, "shape", None)
    if shape is not None and len(shape) != 1:
        raise ValueError(
            "decode: ids must be one sequence of token ids (1-D), "
            f"got a {type(ids).__name__} of shape {tuple(shape)}; "
            "decode each row on its own, e.g. [tokenizer.decode(row) for row in ids]"
        )
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, (str, bytes, set, frozenset, dict)) or not hasattr(ids, "__iter__"):
        unordered = (
            " (a set or a dict has no order)" if isinstance(ids, (set, frozenset, dict)) else ""
        )
        raise TypeError(
            "decode: ids must be a sequence of ints (a list or a 1-D tensor), "
            f"got {type(ids).__name__}{unordered}"
        )
    checked = []
    for position, i in enumerate(ids):
        if not _is_index(i):
            raise TypeError(
                f"decode: token ids must be ints, got ids[{position}] = {i!r} ({type(i).__name__})"
            )
        i = operator.index(i)
        if id_to_token is not None and i not in id_to_token:
            low, high = min(id_to_token), max(id_to_token)
            gaps = "" if high - low + 1 == len(id_to_token) else ", with gaps"
            raise ValueError(
                f"decode: ids[{position}] = {i} is not a token id of this vocabulary: its "
                f"{len(id_to_token):,} ids run from {low} to {high}{gaps}"
            )
        checked.append(i)
    return checked


# notebook 02's load_gpt2_weights (utils/model.py)
# GPT2Config settings that change GPT-2's arithmetic, with the value our model computes
_GPT2_ARITHMETIC = {
    "scale_attn_weights": (True, "our attention divides its scores by sqrt(d_head)"),
    "scale_attn_by_inverse_layer_idx": (False, "ours does not divide scores by the layer number"),
    "reorder_and_upcast_attn": (False, "ours computes attention in the model's dtype"),
    "add_cross_attention": (False, "ours has no cross-attention"),
    "tie_word_embeddings": (True, "our checkpoints of GPT-2 take W_U from the embedding"),
}
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")  # both the tanh approximation our MLP uses


def check_hf_state_dict(hf_state_dict, cfg, config_class) -> None:
    """convert_hf_state_dict: a GPT-2 state dict of tensors with cfg's layers and sizes. (A state
    dict does not say how many heads split d_model: that comes from cfg alone, so build cfg from the
    model's config, config_from_hf(hf_model.config).)"""
    if not isinstance(hf_state_dict, Mapping):
        hint = ": give hf_model.state_dict()" if isinstance(hf_state_dict, torch.nn.Module) else ""
        raise TypeError(
            f"hf_state_dict must be a GPT-2 state dict (a dict of tensors), got "
            f"{type(hf_state_dict).__name__}{hint}"
        )
    require_config("cfg", cfg, config_class)
    sd = {str(k).removeprefix("transformer."): v for k, v in hf_state_dict.items()}
    expected = {
        "wte.weight": (cfg.d_vocab, cfg.d_model),
        "wpe.weight": (cfg.n_ctx, cfg.d_model),
        "ln_f.weight": (cfg.d_model,),
    }
    qkv = 3 * cfg.n_heads * cfg.d_head
    for layer in range(cfg.n_layers):
        expected[f"h.{layer}.attn.c_attn.weight"] = (cfg.d_model, qkv)
        expected[f"h.{layer}.attn.c_proj.weight"] = (cfg.n_heads * cfg.d_head, cfg.d_model)
        expected[f"h.{layer}.mlp.c_fc.weight"] = (cfg.d_model, cfg.d_mlp)
    parts = ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "attn.c_attn.bias")
    parts += ("attn.c_proj.bias", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")
    shapeless = [
        "ln_f.bias",
        *(f"h.{layer}.{part}" for layer in range(cfg.n_layers) for part in parts),
    ]
    for key, shape in {**expected, **dict.fromkeys(shapeless)}.items():
        if key not in sd:
            raise ValueError(
                f"hf_state_dict has no {key}: not a GPT-2 state dict of cfg's shape "
                f"({cfg.n_layers} layers)"
            )
        if not isinstance(sd[key], Tensor) or shape is not None and tuple(sd[key].shape) != shape:
            got = tuple(sd[key].shape) if isinstance(sd[key], Tensor) else type(sd[key]).__name__
            raise ValueError(
                f"hf_state_dict's {key} is {got}, cfg says {shape}: build cfg from the model's "
                "config, config_from_hf(hf_model.config)"
            )
    if f"h.{cfg.n_layers}.attn.c_attn.weight" in sd:
        more = len({k.split(".")[1] for k in sd if k.startswith("h.")})
        raise ValueError(
            f"hf_state_dict has {more} layers, cfg.n_layers is {cfg.n_layers}: its last layers "
            "would be left out; build cfg from the model's config, config_from_hf(hf_model.config)"
        )


_GPT2_CONFIG_FIELDS = ("n_embd", "n_head", "n_layer", "n_positions", "vocab_size")


def require_hf_config(hf_config, overrides: dict, config_class) -> None:
    """config_from_hf: a clear error unless `hf_config` is a Hugging Face GPT-2 config (or one
    with GPT-2's field names) and every override names a field of our Config."""
    missing = [name for name in _GPT2_CONFIG_FIELDS if not hasattr(hf_config, name)]
    if missing:
        hint = (
            "; for a dict use transformers.GPT2Config(**your_dict)"
            if isinstance(hf_config, Mapping)
            else "; for a model use its .config"
            if hasattr(hf_config, "config")
            else ""
        )
        raise TypeError(
            "config_from_hf expects a transformers GPT2Config (hf_model.config), got "
            f"{type(hf_config).__name__}, which has no {', '.join(missing)}{hint}"
        )
    n_embd, n_head = hf_config.n_embd, hf_config.n_head
    if isinstance(n_embd, int) and isinstance(n_head, int) and n_head > 0 and n_embd % n_head:
        raise ValueError(
            f"config_from_hf: n_embd={n_embd} is not a multiple of n_head={n_head}, "
            "so GPT-2 cannot split it into heads"
        )
    fields = set(config_class.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(
            f"config_from_hf: {', '.join(unknown)} is not a field of Config; "
            f"overrides may set {', '.join(config_class.__dataclass_fields__)}"
        )


def _check_gpt2_modules(hf_model) -> None:
    """A config edited after the model was built no longer says how its modules compute: read the
    attention's scaling, the LayerNorms' eps and the MLP's activation from the modules."""
    eps = hf_model.config.layer_norm_epsilon
    for name, module in hf_model.named_modules():
        if isinstance(module, torch.nn.LayerNorm) and module.eps != eps:
            raise ValueError(
                f"hf_model's {name} has eps={module.eps}, but its config says layer_norm_epsilon="
                f"{eps}: our model uses one eps for every LayerNorm and cannot reproduce this one"
            )
        for setting, (expected, why) in _GPT2_ARITHMETIC.items():  # those an attention module keeps
            if getattr(module, setting, expected) != expected:
                raise ValueError(
                    f"hf_model's {name} was built with {setting}={getattr(module, setting)!r}, "
                    f"which our attention cannot reproduce ({why}); only {expected!r} loads"
                )
        act = getattr(module, "act", None)
        if name.endswith("mlp") and act is not None:
            probe = torch.linspace(-3, 3, 7)
            gelu_tanh = torch.nn.functional.gelu(probe, approximate="tanh")
            with torch.no_grad():
                if not torch.allclose(act(probe), gelu_tanh, atol=1e-5):
                    raise ValueError(
                        f"hf_model's {name} computes another activation than gelu_new (its config "
                        f"may say otherwise): our MLP computes gelu_new only"
                    )


def check_gpt2_compatible(model, hf_model, config_from_hf, untied_ok: bool = False) -> None:
    """load_gpt2_weights: a clear error unless `model` is one of our transformers and `hf_model` a
    Hugging Face GPT-2 whose config (`config_from_hf` converts it) and arithmetic ours reproduce.
    untied_ok: an lm_head of its own is fine (utils/hf_export.py reads W_U from it)."""
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "cfg"):
        raise TypeError(
            "model must be a DemoTransformer, e.g. "
            f"DemoTransformer(config_from_hf(hf_model.config)); got {type(model).__name__}"
        )
    if not isinstance(hf_model, torch.nn.Module) or not hasattr(
        getattr(hf_model, "config", None), "n_layer"
    ):
        hint = "; for a state dict use convert_hf_state_dict" if isinstance(hf_model, dict) else ""
        raise TypeError(
            "hf_model must be a Hugging Face GPT-2 (GPT2LMHeadModel or GPT2Model), "
            f"got {type(hf_model).__name__}{hint}"
        )
    require_built_with(model)
    hf_config = hf_model.config
    activation = getattr(hf_config, "activation_function", "gelu_new")
    if activation not in _GELU_TANH:
        raise ValueError(
            f"hf_model uses activation_function={activation!r}; "
            "our MLP computes gelu_new (the tanh approximation) only"
        )
    for setting, (value, why) in _GPT2_ARITHMETIC.items():
        if untied_ok and setting == "tie_word_embeddings":
            continue
        if getattr(hf_config, setting, value) != value:
            raise ValueError(
                f"hf_model has {setting}={getattr(hf_config, setting)!r}, which our model cannot "
                f"reproduce ({why}); only GPT-2's own {setting}={value!r} loads"
            )
    _check_gpt2_modules(hf_model)  # the settings the modules were built with, whatever config says
    lm_head = getattr(hf_model, "lm_head", None)
    if getattr(lm_head, "bias", None) is not None:
        raise ValueError(
            "hf_model's lm_head has a bias, which GPT-2's has not: our unembedding would leave it "
            "out and give other logits"
        )
    if (
        not untied_ok
        and lm_head is not None
        and lm_head.weight.data_ptr() != hf_model.transformer.wte.weight.data_ptr()
    ):
        if not torch.equal(lm_head.weight, hf_model.transformer.wte.weight):
            raise ValueError(
                "hf_model's lm_head is not tied to its embedding (wte): our conversion takes W_U "
                "from the embedding, as GPT-2 does, and would give other logits"
            )
    ours = config_from_hf(hf_config)
    names = ("n_layers", "n_heads", "d_head", "d_model", "d_mlp", "d_vocab", "n_ctx")
    differences = [
        f"{name}: model has {getattr(model.cfg, name)!r}, hf_model has {getattr(ours, name)!r}"
        for name in (*names, "layer_norm_eps", "attn_only")
        if getattr(model.cfg, name) != getattr(ours, name)
    ]
    if differences:
        raise ValueError(
            f"model and hf_model have different configs ({'; '.join(differences)}); "
            "build the model from hf_model's config: "
            "DemoTransformer(config_from_hf(hf_model.config))"
        )


# notebook 05's data (utils/circuits.py)
def require_period_args(n, n_ctx, d_vocab, min_period, max_period, seed=0) -> tuple[int, ...]:
    """repeating_sequences: its sizes as ints, d_vocab >= 2 and min_period <= max_period, a seed
    >= 0 (returned last)."""
    n, n_ctx, d_vocab, max_period = (
        require_int(name, value)
        for name, value in (
            ("n", n),
            ("n_ctx", n_ctx),
            ("d_vocab", d_vocab),
            ("max_period", max_period),
        )
    )
    min_period = require_int("min_period", min_period)
    if d_vocab < 2 or min_period > max_period:
        raise ValueError(
            "need d_vocab >= 2 (BOS and at least one other token) and min_period <= max_period, "
            f"got d_vocab={d_vocab}, min_period={min_period}, max_period={max_period}"
        )
    if max_period > n_ctx - 2:
        raise ValueError(
            f"max_period = {max_period} leaves rows that never repeat: after BOS a row holds "
            f"n_ctx - 1 = {n_ctx - 1} tokens, so a period must be at most n_ctx - 2 = {n_ctx - 2}"
        )
    seed = require_int("seed", seed, minimum=0, maximum=2**63 - 1)
    _require_memory_for_ids(n, n_ctx, "n", "n_ctx")
    return n, n_ctx, d_vocab, min_period, max_period, seed


def _require_memory_for_ids(rows: int, columns: int, rows_name: str, columns_name: str) -> None:
    """A clear error for more int64 ids than this machine's memory holds (a typo, such as 2**70),
    instead of torch's overflow or allocator message."""
    if 8 * rows * columns > _physical_memory():
        raise ValueError(
            f"{rows_name} = {rows:,} rows of {columns_name} = {columns:,} ids would need "
            f"{8 * rows * columns / 2**30:,.0f} GB, more than this machine's "
            f"{_physical_memory() / 2**30:,.0f} GB of memory"
        )


def require_repeat_args(batch, seq_len, d_vocab, seed=0) -> tuple[int, int, int, int]:
    """repeated_tokens: its sizes and seed as ints, d_vocab >= 2 (BOS and one other token)."""
    seed = require_int("seed", seed, minimum=0, maximum=2**63 - 1)
    batch, seq_len, d_vocab = (
        require_int(name, value)
        for name, value in (("batch", batch), ("seq_len", seq_len), ("d_vocab", d_vocab))
    )
    if d_vocab < 2:
        raise ValueError(
            "d_vocab must be at least 2 (BOS, the last id, and at least one other token), "
            f"got {d_vocab}"
        )
    _require_memory_for_ids(batch, 1 + 2 * seq_len, "batch", "1 + 2 * seq_len")
    return batch, seq_len, d_vocab, seed


def require_logits_and_tokens(logits, tokens) -> None:
    """next_token_loss, per_position_loss and next_token_accuracy: float logits
    [batch, posn, d_vocab], posn >= 2, and the int tokens they came from. The ids' range is read
    only on the CPU and outside torch.compile (elsewhere reading it would wait for the device, or
    break the compiled graph; the model's forward has checked the ids it was given)."""
    if not (isinstance(logits, Tensor) and logits.ndim == 3 and logits.is_floating_point()):
        raise ValueError(
            "logits must be a float tensor [batch, posn, d_vocab] "
            "(the model's output; the order is logits, tokens), got "
            f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}"
        )
    if not (
        isinstance(tokens, Tensor)
        and tokens.shape == logits.shape[:2]
        and tokens.dtype in (torch.int64, torch.int32)
    ):
        raise ValueError(
            f"tokens must be the integer token ids [batch, posn] the logits were computed from, "
            f"{tuple(logits.shape[:2])} here, "
            f"got {tokens.dtype if isinstance(tokens, Tensor) else type(tokens).__name__} "
            f"{tuple(tokens.shape) if isinstance(tokens, Tensor) else ''}"
        )
    if logits.shape[1] < 2:
        raise ValueError(
            "logits cover one position, which has no next token to predict: give two or more"
        )
    if logits.shape[0] == 0:
        raise ValueError("logits and tokens hold no sequence (batch 0): give at least one row")
    d_vocab = logits.shape[-1]
    if torch.compiler.is_compiling() or tokens.device.type != "cpu":
        return
    if not 0 <= int(tokens.min()) <= int(tokens.max()) < d_vocab:
        raise ValueError(
            f"tokens must be ids in [0, {d_vocab}) (the logits' d_vocab), got ids from "
            f"{int(tokens.min())} to {int(tokens.max())}"
        )
