"""Checks for the code a learner writes, which say precisely what is wrong: `from utils import
checks; checks.check_layernorm(LayerNorm)`.

One module per notebook, and one for what they share:
    warmup        notebook 00: check_normalise ... check_weighted_values (tensors, einops and
                  einsum), check_mean_squared_error, check_numerical_gradient, check_two_layer_net,
                  check_train_loop
    tokenisation  notebook 01: check_merge_word, check_train_merges, check_bpe_tokenizer
    model         notebook 02: check_layernorm ... check_transformer, against Hugging Face's GPT-2
                  with the same random weights
    training      notebook 03: check_lr_at, check_make_optimizer, check_optimizer_step,
                  check_next_token_accuracy
    sampling      notebook 04: check_temperature, check_frequency_penalty, check_top_k, check_top_p,
                  check_beam_search
    kv_cache      notebook 04: check_kv_cache, the cached forward against the uncached model
    circuits      notebook 05: check_direct_logit_attribution, check_induction_score,
                  check_ablate_heads
    scaling       notebook 06: check_rows_for_rank, check_mean_over_ranks,
                  check_backward_micro_batches
    patching      notebook 07: check_patch_effect, check_patch_residual_stream,
                  check_patch_head_outputs, check_ov_circuit, check_copying_score,
                  check_composition_score
    core          learner_facing (what the learner sees when a check fails), call_learner (the one
                  way the checks call the learner's code), Mistake and known_mistake (the one way to
                  describe a known mistake and its advice)

Each module declares its known mistakes at its top; MISTAKES holds them all. CHECKS maps each
checked name to its check (`make check NOTEBOOK=...` runs the checks whose names a notebook
defines). An exercise stub's NotImplementedError passes through every check unchanged, so the
learner sees its hint.
"""

from utils.checks.circuits import (
    check_ablate_heads,
    check_direct_logit_attribution,
    check_induction_score,
)
from utils.checks.core import MISTAKES, Mistake, call_learner, known_mistake, learner_facing
from utils.checks.kv_cache import check_kv_cache
from utils.checks.model import (
    check_attention,
    check_block,
    check_embed,
    check_layernorm,
    check_mlp,
    check_pos_embed,
    check_transformer,
    check_unembed,
)
from utils.checks.patching import (
    check_composition_score,
    check_copying_score,
    check_ov_circuit,
    check_patch_effect,
    check_patch_head_outputs,
    check_patch_residual_stream,
)
from utils.checks.sampling import (
    check_beam_search,
    check_frequency_penalty,
    check_temperature,
    check_top_k,
    check_top_p,
)
from utils.checks.scaling import (
    check_backward_micro_batches,
    check_mean_over_ranks,
    check_rows_for_rank,
)
from utils.checks.tokenisation import check_bpe_tokenizer, check_merge_word, check_train_merges
from utils.checks.training import (
    check_lr_at,
    check_make_optimizer,
    check_next_token_accuracy,
    check_optimizer_step,
)
from utils.checks.warmup import (
    check_attention_scores,
    check_batched_dot,
    check_combine_heads,
    check_mask_future,
    check_mean_over_heads,
    check_mean_squared_error,
    check_normalise,
    check_numerical_gradient,
    check_outer_product,
    check_pick_log_probs,
    check_repeat_positions,
    check_scale_rows_,
    check_split_heads,
    check_train_loop,
    check_two_layer_net,
    check_weighted_values,
    check_zero_feature,
)

# name in a notebook -> its check; `make check NOTEBOOK=...` runs the checks whose names the
# notebook defines
CHECKS = {
    "normalise": check_normalise,
    "pick_log_probs": check_pick_log_probs,
    "mask_future": check_mask_future,
    "zero_feature": check_zero_feature,
    "scale_rows_": check_scale_rows_,
    "split_heads": check_split_heads,
    "mean_over_heads": check_mean_over_heads,
    "repeat_positions": check_repeat_positions,
    "attention_scores": check_attention_scores,
    "combine_heads": check_combine_heads,
    "outer_product": check_outer_product,
    "batched_dot": check_batched_dot,
    "weighted_values": check_weighted_values,
    "mean_squared_error": check_mean_squared_error,
    "numerical_gradient": check_numerical_gradient,
    "TwoLayerNet": check_two_layer_net,
    "train_loop": check_train_loop,
    "merge_word": check_merge_word,
    "train_merges": check_train_merges,
    "BPETokenizer": check_bpe_tokenizer,
    "LayerNorm": check_layernorm,
    "Embed": check_embed,
    "PosEmbed": check_pos_embed,
    "Attention": check_attention,
    "MLP": check_mlp,
    "TransformerBlock": check_block,
    "Unembed": check_unembed,
    "DemoTransformer": check_transformer,
    "lr_at": check_lr_at,
    "make_optimizer": check_make_optimizer,
    "optimizer_step": check_optimizer_step,
    "next_token_accuracy": check_next_token_accuracy,
    "apply_temperature": check_temperature,
    "apply_frequency_penalty": check_frequency_penalty,
    "apply_top_k": check_top_k,
    "apply_top_p": check_top_p,
    "beam_search": check_beam_search,
    "forward_with_cache": check_kv_cache,
    "direct_logit_attribution": check_direct_logit_attribution,
    "induction_score": check_induction_score,
    "ablate_heads": check_ablate_heads,
    "rows_for_rank": check_rows_for_rank,
    "mean_over_ranks": check_mean_over_ranks,
    "backward_micro_batches": check_backward_micro_batches,
    "patch_effect": check_patch_effect,
    "patch_residual_stream": check_patch_residual_stream,
    "patch_head_outputs": check_patch_head_outputs,
    "ov_circuit": check_ov_circuit,
    "copying_score": check_copying_score,
    "composition_score": check_composition_score,
}

__all__ = [
    "CHECKS",
    "MISTAKES",
    "Mistake",
    "call_learner",
    "known_mistake",
    "learner_facing",
    *(f.__name__ for f in CHECKS.values()),
]
