"""GENERATED from notebooks/05_looking_inside.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/05_looking_inside.ipynb, code cell 11
"""Notebook 05's analysis: the residual stream's components, direct logit attribution, induction
and previous-token scores, ablation, and the repeated-token data that induction heads form on,
with the recipe of the induction model (which notebook 07 loads, or trains when it finds none)."""


from pathlib import Path

import einops
import torch
import torch.nn as nn
from torch import Tensor

import utils.checkpoints
import utils.fused
import utils.hooks  # as modules: running this cell never replaces a function you pasted here
import utils.model
import utils.safe_training  # notebook 03's trainer, for the induction model
import utils.training
from utils.configs import require_run_config
from utils.model import Float, Int
from utils.printing import print_wrapped  # print, with lines over 100 characters wrapped
from utils.validation import require_attribution, require_cache, require_heads
from utils.validation import require_logits_and_tokens, require_path, require_pattern
from utils.validation import require_period_args, require_repeat_args


def residual_components(
    cache: utils.hooks.ActivationCache,
) -> tuple[list[str], Float[Tensor, "component batch posn d_model"]]:
    """Everything written into the residual stream, in order: embeddings, then each layer's
    attention and MLP outputs. Their sum is the stream leaving the last block."""
    require_cache(cache)
    cfg = cache.model.cfg
    labels, parts = ["embed", "pos_embed"], [cache["embed"], cache["pos_embed"]]
    for layer in range(cfg.n_layers):
        labels.append(f"attn {layer}")
        parts.append(cache["attn_out", layer])
        if not cfg.attn_only:
            labels.append(f"mlp {layer}")
            parts.append(cache["mlp_out", layer])
    return labels, torch.stack(parts)


# --- notebooks/05_looking_inside.ipynb, code cell 15
def direct_logit_attribution(
    vectors: Float[Tensor, "... d_model"], scale: Float[Tensor, ""], model: nn.Module, token: int
) -> Float[Tensor, "..."]:
    """What each vector written into the final residual stream adds to the logit of `token`,
    through the final LayerNorm (centred, divided by `scale`, times ln_final.w) and the
    unembedding. `scale`: ln_final's scale at that position, a number (0-d tensor):
    cache["scale"][b, posn, 0]."""
    # bad input: one clear error (utils/validation.py; given, not the exercise)
    require_attribution(vectors, scale, model, token)
    centred = vectors - vectors.mean(dim=-1, keepdim=True)
    return (centred / scale * model.ln_final.w) @ model.unembed.W_U[:, token]


# --- notebooks/05_looking_inside.ipynb, code cell 17
def head_outputs(
    cache: utils.hooks.ActivationCache, layer: int
) -> Float[Tensor, "batch posn n_heads d_model"]:
    """What each head of `layer` writes into the residual stream: its z through its own slice of
    W_O (without b_O, which all the heads of the layer share). Summed over heads, plus b_O, it is
    cache["attn_out", layer]."""
    require_cache(cache, layer)
    W_O = cache.model.blocks[layer].attn.W_O  # [n_heads, d_head, d_model]
    return einops.einsum(
        cache["z", layer],
        W_O,
        "batch posn n_heads d_head, n_heads d_head d_model -> batch posn n_heads d_model",
    )


# --- notebooks/05_looking_inside.ipynb, code cell 19
def repeating_sequences(
    n: int, n_ctx: int, d_vocab: int, min_period: int, max_period: int, seed: int
) -> Int[Tensor, "n n_ctx"]:
    """`n` rows of BOS (the last id, d_vocab - 1) followed by random tokens (ids below BOS) that
    repeat with a period drawn per row from [min_period, max_period]: induction heads form on
    these."""
    n, n_ctx, d_vocab, min_period, max_period, seed = require_period_args(
        n, n_ctx, d_vocab, min_period, max_period, seed
    )
    generator = torch.Generator().manual_seed(seed)
    periods = torch.randint(min_period, max_period + 1, (n, 1), generator=generator)
    pattern = torch.randint(0, d_vocab - 1, (n, max_period), generator=generator)
    body = pattern.gather(1, torch.arange(n_ctx - 1) % periods)  # i holds pattern[i mod period]
    return torch.cat([torch.full((n, 1), d_vocab - 1), body], dim=1)


def repeated_tokens(
    batch: int, seq_len: int, d_vocab: int, seed: int = 0
) -> Int[Tensor, "batch 1+2*seq_len"]:
    """BOS, then `seq_len` random tokens, then the same tokens again: the standard test of
    induction."""
    batch, seq_len, d_vocab, seed = require_repeat_args(batch, seq_len, d_vocab, seed)
    generator = torch.Generator().manual_seed(seed)
    half = torch.randint(0, d_vocab - 1, (batch, seq_len), generator=generator)
    return torch.cat([torch.full((batch, 1), d_vocab - 1), half, half], dim=1)


def per_position_loss(
    logits: Float[Tensor, "batch posn d_vocab"], tokens: Int[Tensor, "batch posn"]
) -> Float[Tensor, "batch posn-1"]:
    """The loss of predicting each next token: -log p(tokens[:, i + 1]) from logits[:, i]."""
    require_logits_and_tokens(logits, tokens)  # in that order, from the same sequences
    return -logits[:, :-1].log_softmax(dim=-1).gather(-1, tokens[:, 1:, None].long())[..., 0]


# --- notebooks/05_looking_inside.ipynb, code cell 20
# 2 layers of 4 heads, no MLP; 99 ordinary tokens and BOS (id 99); 49 positions: BOS and a
# sequence of 24 twice
INDUCTION_CFG = utils.model.Config(
    d_model=64, n_layers=2, n_heads=4, d_head=16, d_mlp=256, n_ctx=49, d_vocab=100, attn_only=True
)
INDUCTION_STEPS = {"ci": 1000, "cpu": 3000, "gpu": 3000}  # by run config


def induction_sequences(steps: int) -> tuple[Tensor, Tensor]:
    """Training sequences, 32 per step (fresh data every step), and 128 validation sequences."""
    cfg = INDUCTION_CFG
    train = repeating_sequences(32 * steps, cfg.n_ctx, cfg.d_vocab, 4, 24, seed=1)
    return train, repeating_sequences(128, cfg.n_ctx, cfg.d_vocab, 4, 24, seed=2)


# --- notebooks/05_looking_inside.ipynb, code cell 22
def train_induction_model(run_cfg, checkpoint_dir: str | Path) -> tuple[nn.Module, object]:
    """(the model, its History): notebook 03's trainer on induction_sequences, with SafeTrainer's
    checkpoints in a new run folder inside checkpoint_dir / "induction"."""
    run_cfg = require_run_config(run_cfg)  # or a config's name, such as "ci"
    folder = require_path("checkpoint_dir must be a folder path", checkpoint_dir) / "induction"
    steps = INDUCTION_STEPS[run_cfg.name]
    train_sequences, val_sequences = induction_sequences(steps)
    args = utils.training.TrainingArgs(
        batch_size=32,
        max_steps=steps,
        lr=2e-3,
        warmup_steps=50,
        weight_decay=0.01,
        eval_every=steps // 4,
        eval_batches=4,
        sample_every=steps,
        checkpoint_every=steps,
        device=run_cfg.device,
        checkpoint_dir=str(folder),
    )
    torch.manual_seed(0)
    trainer = utils.safe_training.SafeTrainer(  # notebook 03's, saving each run in a new folder
        utils.fused.FusedTransformer(INDUCTION_CFG), args, train_sequences, val_sequences
    )
    return trainer.model, trainer.train()


def load_induction_model(run_cfg, checkpoint_dir: str | Path) -> utils.hooks.HookedDemoTransformer:
    """The latest induction model in checkpoint_dir / "induction" (notebook 07 starts from it),
    or, if there is none, one trained now; hooked, in eval mode."""
    run_cfg = require_run_config(run_cfg)
    folder = require_path("checkpoint_dir must be a folder path", checkpoint_dir) / "induction"
    latest, steps = utils.checkpoints.latest_checkpoint(folder), INDUCTION_STEPS[run_cfg.name]
    if latest is not None:
        model, meta = utils.checkpoints.load_checkpoint_model(latest, run_cfg.device)
        if model.cfg == INDUCTION_CFG and meta["step"] == steps:
            print_wrapped(f"the induction model of notebook 05: {latest}")
            return utils.hooks.HookedDemoTransformer.from_model(model).eval()
    print_wrapped(
        f"no induction model of notebook 05 for {run_cfg.name} ({steps} steps) in {folder}: "
        "training one now"
    )
    model, _ = train_induction_model(run_cfg, checkpoint_dir)
    return utils.hooks.HookedDemoTransformer.from_model(model).eval()


# --- notebooks/05_looking_inside.ipynb, code cell 25
def induction_score(
    pattern: Float[Tensor, "batch n_heads query_posn key_posn"], seq_len: int
) -> Float[Tensor, "n_heads"]:
    """Each head's mean attention from each query of the repeat to the key right after that
    token's earlier copy, for tokens BOS, r, r with r of length seq_len (2 * seq_len + 1
    positions)."""
    # bad input: one clear error (utils/validation.py; given, not the exercise)
    require_pattern(pattern, seq_len)
    stripe = pattern.diagonal(
        offset=-(seq_len - 1), dim1=-2, dim2=-1
    )  # [batch, n_heads, queries seq_len - 1 .. 2 * seq_len]
    return stripe[..., 2:].mean(dim=(0, 2))


# --- notebooks/05_looking_inside.ipynb, code cell 27
def previous_token_score(
    pattern: Float[Tensor, "batch n_heads query_posn key_posn"],
) -> Float[Tensor, "n_heads"]:
    """Each head's mean attention from each position to the one before it."""
    require_pattern(pattern)
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2))


# --- notebooks/05_looking_inside.ipynb, code cell 30
def ablate_heads(
    model: utils.hooks.HookedDemoTransformer,
    tokens: Int[Tensor, "batch posn"],
    heads: list[tuple[int, int]],
) -> Float[Tensor, "batch posn d_vocab"]:
    """The logits of `model` on `tokens` with each (layer, head) in `heads` zero-ablated: its z set
    to 0 at every position."""
    # bad input: one clear error (utils/validation.py; given, not the exercise)
    require_heads(model, heads)

    def zero_heads(
        z: Float[Tensor, "batch posn n_heads d_head"], hook: utils.hooks.HookPoint
    ) -> Tensor:
        layer = int(hook.name.split(".")[1])  # hook.name is e.g. "blocks.1.attn.hook_z"
        z = z.clone()  # a new tensor rather than changing the one the forward pass made
        z[:, :, [head for where, head in heads if where == layer]] = 0.0
        return z

    layers = sorted({layer for layer, _ in heads})
    return model.run_with_hooks(
        tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_heads) for layer in layers]
    )


# written by `make export`; sha256 of the text above: f86fd81f8e522e83
