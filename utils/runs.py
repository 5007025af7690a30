"""One pipeline for a run of notebook 03, and for reloading it in notebooks 04 and 05.

`prepare_run(run_cfg, corpus, tokenizer)` does notebook 03's data steps (tokenise each document
whole, then pack; the model config for that tokenizer). `load_trained_model(run_cfg, folder)`
gives notebooks 04 and 05 the model that notebook 03 trained for this config, with the tokenizer
it was trained with, rebuilt from the checkpoint (our BPE's vocabulary and merges are in it): no
tokenizer is trained again. Only when there is no such checkpoint does it train a short run, with
the same pipeline and notebook 03's trainer, and save it for next time.

A checkpoint is recognised as this config's by its model config, its tokenizer and a fingerprint
of the corpus it was trained on (a hash of the documents).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

import utils.checkpoints
import utils.configs
import utils.gpu
import utils.model
import utils.training
from utils.bpe import BPETokenizer
from utils.printing import print_wrapped
from utils.resources import Corpus, load_corpus, load_tokenizer
from utils.configs import require_run_config
from utils.validation import require_documents, require_id_list, require_path

TOKENIZERS = ("bpe", "gpt2")


@dataclass
class RunTokenizer:
    """The tokenizer a run trains with, and what a checkpoint stores to rebuild it."""

    name: str  # "bpe" (ours, trained on the corpus as in notebook 01) or "gpt2"
    encode: Callable[[str], list[int]]
    decode_ids: Callable[[list[int]], str]
    eot_id: int
    n_tokens: int  # ids it can decode (on a GPU, d_vocab is padded beyond them)
    saved: dict  # {"name": "gpt2"}, or {"name": "bpe", "vocab": ..., "merges": ...}

    def decode(self, ids) -> str:
        """The text of `ids`, leaving out padding ids, which a sampler could (rarely) pick."""
        ids = require_id_list(ids, None)  # 104.7 is no id: refused, not rounded down
        return self.decode_ids([i for i in ids if 0 <= i < self.n_tokens])

    def __repr__(self) -> str:
        return (
            f"RunTokenizer({self.name!r}: {self.n_tokens:,} tokens, <|endoftext|> = {self.eot_id})"
        )


def run_tokenizer(name: str, bpe: BPETokenizer | None = None, gpt2=None) -> RunTokenizer:
    """Our BPE (`bpe`, trained on the corpus) or GPT-2's tokenizer (`gpt2`, load_tokenizer()'s)."""
    if name not in TOKENIZERS:
        raise ValueError(f"the tokenizer must be one of {TOKENIZERS}, got {name!r}")
    if name == "gpt2":
        gpt2 = gpt2 if gpt2 is not None else load_tokenizer()
        saved = {"name": "gpt2"}
        return RunTokenizer("gpt2", gpt2.encode, gpt2.decode, gpt2.eos_token_id, len(gpt2), saved)
    if not isinstance(bpe, BPETokenizer):
        raise TypeError(f"the 'bpe' tokenizer needs bpe=BPETokenizer.train(...), got {bpe!r}")
    merges = sorted(bpe.merge_ranks, key=bpe.merge_ranks.get)
    saved = {"name": "bpe", "vocab": dict(bpe.vocab), "merges": [list(pair) for pair in merges]}
    return RunTokenizer("bpe", bpe.encode, bpe.decode, bpe.eot_id, len(bpe), saved)


def tokenizer_from_checkpoint(saved) -> RunTokenizer:
    """The RunTokenizer a checkpoint recorded; ValueError if it recorded none that can be
    rebuilt."""
    if isinstance(saved, dict) and saved.get("name") == "gpt2":
        return run_tokenizer("gpt2")
    if isinstance(saved, dict) and saved.get("name") == "bpe" and "vocab" in saved:
        try:
            bpe = BPETokenizer(saved["vocab"], [tuple(pair) for pair in saved["merges"]])
        except (KeyError, TypeError, ValueError) as error:  # an edited or damaged record
            raise ValueError(f"the checkpoint's BPE tokenizer cannot be rebuilt ({error!r:.120})")
        return run_tokenizer("bpe", bpe=bpe)
    raise ValueError(
        f"the checkpoint records no tokenizer that can be rebuilt (it has {saved!r:.60}): it was "
        f"written by an earlier version of notebook 03"
    )


def corpus_fingerprint(corpus: Corpus) -> str:
    """A short hash of the corpus's documents, split by split: the same text, the same
    fingerprint."""
    if not all(hasattr(corpus, split) for split in ("name", "train", "val")):
        raise TypeError(f"corpus must be a Corpus (load_corpus()), got {type(corpus).__name__}")
    for name, split in (("corpus.train", corpus.train), ("corpus.val", corpus.val)):
        require_documents(split, name)  # texts, not ids or bytes
    digest = hashlib.sha256()
    for split in (corpus.train, corpus.val):
        for doc in split:
            digest.update(doc.encode("utf-8", "surrogatepass") + b"\x00")
        digest.update(b"\x01")
    return f"{corpus.name}:{digest.hexdigest()[:16]}"


@dataclass
class Run:
    """What notebook 03 trains on: the corpus, the tokenizer, the packed data, the model config."""

    corpus: Corpus
    tokenizer: RunTokenizer
    cfg: utils.model.Config
    train_stream: torch.Tensor  # 1-D token ids, documents in a row
    val_stream: torch.Tensor
    train_sequences: torch.Tensor  # [n_sequences, n_ctx]
    val_sequences: torch.Tensor

    @property
    def chars_per_token(self) -> float:
        return sum(map(len, self.corpus.val)) / len(self.val_stream)

    @property
    def recorded(self) -> dict:
        """What SafeTrainer's checkpoints record of this run: SafeTrainer(..., **run.recorded)."""
        return {"tokenizer": self.tokenizer.saved, "corpus": corpus_fingerprint(self.corpus)}


def prepare_run(
    run_cfg, corpus: Corpus | None = None, tokenizer: RunTokenizer | None = None
) -> Run:
    """Notebook 03's data for a run config: each document tokenised whole after <|endoftext|>,
    packed into rows of n_ctx; the model config, with d_vocab padded to a multiple of 64 on a GPU
    (faster matmuls; the extra ids never occur in the data, so training gives them low logits)."""
    run_cfg = require_run_config(run_cfg)
    if corpus is not None and not isinstance(corpus, Corpus):
        raise TypeError(
            f"corpus must be None or load_corpus()'s result, got {type(corpus).__name__}"
        )
    if tokenizer is not None and not isinstance(tokenizer, RunTokenizer):
        raise TypeError(
            f"tokenizer must be None or run_tokenizer(...)'s result, got {type(tokenizer).__name__}"
        )
    corpus = corpus if corpus is not None else load_corpus(max_chars=run_cfg.corpus_chars)
    if tokenizer is None:
        bpe = None
        if run_cfg.tokenizer == "bpe":
            bpe = BPETokenizer.train(corpus.train_text, run_cfg.bpe_vocab_size)
        tokenizer = run_tokenizer(run_cfg.tokenizer, bpe=bpe)
    cfg = _config_for(run_cfg, tokenizer)
    tokenize, pack = utils.training.tokenize_documents, utils.training.pack
    train_stream = tokenize(corpus.train, tokenizer.encode, tokenizer.eot_id)
    val_stream = tokenize(corpus.val, tokenizer.encode, tokenizer.eot_id)
    train, val = pack(train_stream, cfg.n_ctx), pack(val_stream, cfg.n_ctx)
    return Run(corpus, tokenizer, cfg, train_stream, val_stream, train, val)


@dataclass
class TrainedModel:
    """Notebook 03's model for this config, with the tokenizer it was trained with."""

    model: torch.nn.Module  # a DemoTransformer, or the model_class asked for
    meta: dict  # from the checkpoint: step, history, args, tokenizer, corpus
    checkpoint: Path
    corpus: Corpus
    tokenizer: RunTokenizer
    sample_prompt: str  # notebook 03's sample prompt (the start of the first validation document)

    @property
    def encode(self):
        return self.tokenizer.encode

    @property
    def eot_id(self) -> int:
        return self.tokenizer.eot_id

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)


def short_run_steps(run_cfg) -> int:
    """Steps of the short run trained when notebook 03 has not run (notebook 03 trains longer)."""
    run_cfg = require_run_config(run_cfg)
    return {"ci": 60, "cpu": 150, "gpu": 500}.get(run_cfg.name, 150)


def load_trained_model(run_cfg, checkpoint_dir: str | Path, model_class=None) -> TrainedModel:
    """The latest checkpoint in `checkpoint_dir` if notebook 03 trained it for this config, corpus
    and tokenizer (its tokenizer rebuilt from the checkpoint); otherwise a short run of notebook
    03's trainer (seconds under `ci`, under two minutes under `cpu`), saved there for next time."""
    from utils.safe_training import SafeTrainer  # the trainer notebook 03 trains with

    run_cfg = require_run_config(run_cfg)  # or a config's name, such as "ci"
    checkpoint_dir = require_path("checkpoint_dir must be a folder path", checkpoint_dir)
    corpus = load_corpus(max_chars=run_cfg.corpus_chars)
    fingerprint = corpus_fingerprint(corpus)
    sample_prompt = corpus.val[0][:20]
    why = f"no checkpoint in {checkpoint_dir}"
    latest = utils.checkpoints.latest_checkpoint(checkpoint_dir)
    if latest is not None:
        try:
            model, meta = utils.checkpoints.load_checkpoint_model(
                latest, run_cfg.device, model_class
            )
            tokenizer = tokenizer_from_checkpoint(meta["tokenizer"])
        except (OSError, ValueError) as err:
            why = f"{latest} could not be used ({str(err)[:200]})"
        else:
            different = [
                what
                for what, same in (
                    ("model config", model.cfg == _config_for(run_cfg, tokenizer)),
                    ("tokenizer", tokenizer.name == run_cfg.tokenizer),
                    ("corpus", meta.get("corpus") == fingerprint),
                )
                if not same
            ]
            if not different:
                return TrainedModel(model, meta, latest, corpus, tokenizer, sample_prompt)
            why = f"{latest} was trained with another {' and '.join(different)}"
    print_wrapped(f"{why}: training a model for a short run (notebook 03's pipeline and trainer)")
    run = prepare_run(run_cfg, corpus)
    steps, warmup = utils.training.run_length(
        len(run.train_sequences),
        run_cfg.train["batch_size"],
        short_run_steps(run_cfg),
        run_cfg.train["warmup_steps"],
        run_cfg.max_epochs,
    )
    every = {"eval_every": steps, "sample_every": steps}
    args = run_training_args(run_cfg, run, steps, warmup, checkpoint_dir, **every)
    torch.manual_seed(args.seed)
    from utils.fused import FusedTransformer  # notebook 03's fast twin

    model = FusedTransformer(run.cfg)
    trainer = SafeTrainer(model, args, run.train_sequences, run.val_sequences, **run.recorded)
    trainer.train()
    model, meta = utils.checkpoints.load_checkpoint_model(
        trainer.last_checkpoint, run_cfg.device, model_class
    )
    return TrainedModel(model, meta, trainer.last_checkpoint, corpus, run.tokenizer, sample_prompt)


def run_training_args(
    run_cfg, run: Run, steps: int, warmup_steps: int, checkpoint_dir: str | Path, **fields
) -> utils.training.TrainingArgs:
    """Notebook 03's TrainingArgs for `run`: the config's settings for `steps` steps, this
    machine's (a GPU's precision, micro-batches, compile), the start of the first validation
    document as the sample prompt; `fields` override any of them."""
    run_cfg = require_run_config(run_cfg)
    if not isinstance(run, Run):
        raise TypeError(f"run must be prepare_run(run_cfg)'s result, got {type(run).__name__}")
    flops = utils.gpu.model_flops_per_token(run.cfg)
    settings = utils.gpu.settings_for_this_machine(run_cfg, run.cfg, steps, flops)
    merged = {
        **run_cfg.train,
        "max_steps": steps,
        "warmup_steps": warmup_steps,
        **settings.training_args(),
        "sample_prompt": run.corpus.val[0][:20],
        "checkpoint_dir": str(checkpoint_dir),
        **fields,
    }
    batch, micro = merged["batch_size"], merged.get("micro_batch_size")
    if micro and "micro_batch_size" not in fields and batch % micro:  # another batch_size asked for
        fitting = [size for size in range(1, micro + 1) if batch % size == 0]
        merged["micro_batch_size"] = None if micro >= batch else max(fitting)
    return utils.training.TrainingArgs(**merged)


def _config_for(run_cfg, tokenizer: RunTokenizer) -> utils.model.Config:
    """The run config's model for this tokenizer (d_vocab padded to a multiple of 64 on a GPU)."""
    d_vocab = tokenizer.n_tokens
    if run_cfg.device == "cuda":
        d_vocab = utils.gpu.padded_vocab_size(d_vocab)
    return utils.model.Config(**run_cfg.model, d_vocab=d_vocab)
