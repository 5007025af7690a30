"""Run configs: one environment variable, TUTORIAL_CONFIG, picks `ci`, `cpu` or `gpu` for every
notebook."""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field

import torch

from utils.printing import print_wrapped
from utils.tracebacks import hide_call_frames
from utils.validation import require_int

ENV_VAR = "TUTORIAL_CONFIG"


@dataclass(frozen=True)
class RunConfig:
    name: str
    description: str
    model: dict  # keyword arguments for utils.model.Config (d_vocab is set by the tokenizer choice)
    corpus_chars: int | None  # characters of the corpus to use; None = all of it
    bpe_vocab_size: int  # size of the small BPE vocabulary trained in notebook 01
    tokenizer: str  # "bpe" (small trained vocabulary) or "gpt2" (50257 tokens) for notebook 03
    # notebook 03 trains at most this many passes over a small corpus (more would memorise it)
    max_epochs: float
    train: dict = field(default_factory=dict)  # keyword arguments for utils.training.TrainingArgs

    @property
    def device(self) -> str:
        return "cuda" if torch.cuda.is_available() and self.name == "gpu" else "cpu"


CONFIGS = {
    "ci": RunConfig(
        name="ci",
        description=(
            "tiny and fast: what CI re-executes every notebook with, under 30 s each on an idle CPU"
        ),
        model=dict(d_model=64, n_layers=2, n_heads=4, d_head=16, d_mlp=256, n_ctx=64),
        corpus_chars=200_000,
        bpe_vocab_size=512,
        tokenizer="bpe",
        max_epochs=8,
        train=dict(
            batch_size=16,
            max_steps=400,
            lr=3e-3,
            warmup_steps=30,
            eval_every=100,
            eval_batches=8,
            sample_every=200,
            sample_tokens=40,
            checkpoint_every=200,
        ),
    ),
    "cpu": RunConfig(
        name="cpu",
        description=(
            "a laptop: about 10 min of training in notebook 03 (1.5 min offline: a smaller corpus)"
        ),
        model=dict(d_model=192, n_layers=4, n_heads=6, d_head=32, d_mlp=768, n_ctx=128),
        corpus_chars=None,
        bpe_vocab_size=2048,
        tokenizer="bpe",
        max_epochs=8,
        train=dict(
            batch_size=32,
            max_steps=1500,
            lr=2e-3,
            warmup_steps=100,
            eval_every=50,
            eval_batches=20,
            sample_every=100,
            sample_tokens=60,
            checkpoint_every=100,
        ),
    ),
    "gpu": RunConfig(
        name="gpu",
        description=(
            "a CUDA GPU: a GPT-2-small-shaped model; precision, micro-batch and torch.compile "
            "chosen for the GPU found"
        ),
        model=dict(d_model=768, n_layers=12, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024),
        corpus_chars=None,
        bpe_vocab_size=8192,
        tokenizer="gpt2",
        max_epochs=8,
        train=dict(
            batch_size=16,
            max_steps=2000,
            lr=6e-4,
            warmup_steps=200,
            eval_every=250,
            eval_batches=20,
            sample_every=500,
            sample_tokens=60,
            checkpoint_every=500,
        ),
        # device, autocast, micro_batch_size and compile: utils.gpu.choose_settings, for the GPU
        # found
    ),
}


def config_name() -> str:
    """The config chosen by TUTORIAL_CONFIG; by default `gpu` when CUDA is available, else `cpu`."""
    name = os.environ.get(ENV_VAR, "").strip().lower()
    if not name:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in CONFIGS:
        raise ValueError(f"{ENV_VAR}={name!r} is not a config; choose one of {sorted(CONFIGS)}")
    return name


def get_config(name: str | None = None) -> RunConfig:
    name = config_name() if name is None else name  # 0 or "" is no name: refused, not the default
    if not isinstance(name, str) or name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(CONFIGS)}")
    return CONFIGS[name]


def require_run_config(run_cfg) -> RunConfig:
    """`run_cfg` as a RunConfig: one already, or a config's name such as "ci"; anything else gets
    one clear line."""
    if isinstance(run_cfg, str):
        return get_config(run_cfg)
    if not isinstance(run_cfg, RunConfig):
        raise TypeError(
            f"run_cfg must be a run config, setup_notebook()'s result or a name such as 'ci', "
            f"got {type(run_cfg).__name__}"
        )
    return run_cfg


def seed_everything(seed: int = 0) -> None:
    seed = require_int("seed", seed, minimum=0, maximum=2**63 - 1)  # numpy's too, as a Python int
    random.seed(seed)
    torch.manual_seed(seed)


PLOTLY_ENV_VAR = "TUTORIAL_PLOTLY"  # "embed": figures that an HTML export shows offline too


def configure_plotly() -> None:
    """Figures that survive outside JupyterLab: Colab's own renderer there; elsewhere JupyterLab's
    interactive output plus an HTML copy that loads plotly.js from its CDN, which the HTML export
    and other viewers show online (a few KB per figure, not 3.5 MB of plotly.js). With
    TUTORIAL_PLOTLY=embed, the HTML copy carries plotly.js itself (3.5 MB, once per notebook), so
    that an export opened offline shows its figures too."""
    import plotly.io as pio

    choice = os.environ.get(PLOTLY_ENV_VAR, "").strip().lower()
    if choice not in ("", "embed"):
        raise ValueError(f"{PLOTLY_ENV_VAR}={choice!r}: leave it unset, or set it to 'embed'")
    if "google.colab" in sys.modules:
        pio.renderers.default = "colab"
    else:
        copy = "notebook" if choice == "embed" else "notebook_connected"
        pio.renderers.default = f"plotly_mimetype+{copy}"


def setup_notebook(seed: int = 0) -> RunConfig:
    """First cell of every notebook: pick the config, seed, show tracebacks without PyTorch's
    module-call frames (utils/tracebacks.py), and print where we are running."""
    from utils.resources import is_online

    cfg = get_config()
    seed_everything(seed)
    configure_plotly()
    hide_call_frames()
    if cfg.name == "gpu" and not torch.cuda.is_available():
        print_wrapped(
            f"Note: {ENV_VAR}=gpu but no CUDA device is visible; running the gpu config on the "
            "CPU will be slow."
        )
    network = (
        "online (Hugging Face hub reachable)" if is_online() else "offline (using local fallbacks)"
    )
    print_wrapped(f"config: {cfg.name} ({cfg.description})")
    print(f"device: {cfg.device} | torch {torch.__version__} | network: {network}")
    return cfg
