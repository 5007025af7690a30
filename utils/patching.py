"""GENERATED from notebooks/07_patching_and_circuits.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/07_patching_and_circuits.ipynb, code cell 2
"""Notebook 07's methods: activation patching (the residual stream at each layer and position,
each head's output) and the induction circuit read from the weights (OV copying, composition)."""


from typing import Callable

import torch
from torch import Tensor

import utils.hooks  # as a module: running this cell never replaces a class you pasted here
from utils.model import Float, Int
from utils.validation import require_circuit, require_composition_args, require_effect_args
from utils.validation import require_head_of, require_patching

Metric = Callable[[Tensor], float]  # the logits of a run -> how much of the behaviour it shows


# --- notebooks/07_patching_and_circuits.ipynb, code cell 5
def patch_effect(value: float, clean: float, corrupted: float) -> float:
    """How much of the clean run's behaviour a patched run restores: 0 for the corrupted run's
    metric, 1 for the clean run's."""
    require_effect_args(value, clean, corrupted)  # numbers, clean != corrupted: one clear line
    return (value - corrupted) / (clean - corrupted)


# --- notebooks/07_patching_and_circuits.ipynb, code cell 7
def patch_residual_stream(
    model: utils.hooks.HookedDemoTransformer,
    clean_tokens: Int[Tensor, "batch posn"],
    corrupted_tokens: Int[Tensor, "batch posn"],
    metric: Metric,
) -> Float[Tensor, "n_layers posn"]:
    """metric of the corrupted run with the residual stream entering block `layer` at `position`
    taken from the clean run, for every layer and position."""
    require_patching(model, clean_tokens, corrupted_tokens, metric)  # one clear line if not
    _, clean_cache = model.run_with_cache(clean_tokens)
    n_posn = corrupted_tokens.shape[1]
    results = torch.zeros(model.cfg.n_layers, n_posn)
    for layer in range(model.cfg.n_layers):
        for position in range(n_posn):

            def patch(resid: Tensor, hook: utils.hooks.HookPoint) -> Tensor:
                resid = resid.clone()
                resid[:, position] = clean_cache["resid_pre", layer][:, position]
                return resid

            logits = model.run_with_hooks(
                corrupted_tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", patch)]
            )
            results[layer, position] = float(metric(logits))  # numpy's floats too
    return results


# --- notebooks/07_patching_and_circuits.ipynb, code cell 10
def patch_head_outputs(
    model: utils.hooks.HookedDemoTransformer,
    clean_tokens: Int[Tensor, "batch posn"],
    corrupted_tokens: Int[Tensor, "batch posn"],
    metric: Metric,
) -> Float[Tensor, "n_layers n_heads"]:
    """metric of the corrupted run with head `head` of `layer`'s z, at every position, taken from
    the clean run, for every head."""
    require_patching(model, clean_tokens, corrupted_tokens, metric)  # one clear line if not
    _, clean_cache = model.run_with_cache(clean_tokens)
    results = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):

            def patch(z: Tensor, hook: utils.hooks.HookPoint) -> Tensor:
                z = z.clone()
                z[:, :, head] = clean_cache["z", layer][:, :, head]
                return z

            logits = model.run_with_hooks(
                corrupted_tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)]
            )
            results[layer, head] = float(metric(logits))
    return results


# --- notebooks/07_patching_and_circuits.ipynb, code cell 13
def ov_circuit(model: torch.nn.Module, layer: int, head: int) -> Float[Tensor, "d_vocab d_vocab"]:
    """The full OV circuit of one head: row t is what attending to token t adds to each logit."""
    require_head_of(model, layer, head)  # ints in range, an explicit model: one clear line if not
    attn = model.blocks[layer].attn
    return model.embed.W_E @ attn.W_V[head] @ attn.W_O[head] @ model.unembed.W_U


def copying_score(circuit: Float[Tensor, "n n"]) -> float:
    """The share of rows whose largest entry is on the diagonal (token t raises its own logit
    most)."""
    require_circuit(circuit)  # square and finite
    rows = torch.arange(circuit.shape[0], device=circuit.device)
    return (circuit.argmax(dim=-1) == rows).float().mean().item()


# --- notebooks/07_patching_and_circuits.ipynb, code cell 16
def composition_score(
    W_A: Float[Tensor, "d_model d_model"], W_B: Float[Tensor, "d_model d_model"]
) -> float:
    """How much of W_A's output W_B reads: ||W_A W_B|| / (||W_A|| ||W_B||), Frobenius norms."""
    require_composition_args(W_A, W_B)  # 2-D, chaining, nonzero: one clear line if not
    norm = torch.linalg.matrix_norm
    return (norm(W_A @ W_B) / (norm(W_A) * norm(W_B))).item()


# written by `make export`; sha256 of the text above: 9967e46d6eae66b7
