"""Every check passes the reference implementation and catches each known mistake, naming it."""

import math
import os
import re
import traceback
from dataclasses import replace
from pathlib import Path

import einops
import numpy as np
import pytest
from named_mistakes import names
from terminal_text import without_colours
import torch
import torch.nn.functional as F

from utils import checks
from utils.checks import MISTAKES
from utils.checks import core as checks_core
from utils.checks import model as model_checks
from utils.model import (
    MLP,
    Attention,
    Config,
    DemoTransformer,
    Embed,
    LayerNorm,
    PosEmbed,
    TransformerBlock,
    Unembed,
)

CORRECT = [
    (checks.check_layernorm, LayerNorm),
    (checks.check_embed, Embed),
    (checks.check_pos_embed, PosEmbed),
    (checks.check_attention, Attention),
    (checks.check_mlp, MLP),
    (checks.check_block, TransformerBlock),
    (checks.check_unembed, Unembed),
    (checks.check_transformer, DemoTransformer),
]
OTHER_CFG = Config(
    d_model=48,
    d_vocab=300,
    n_ctx=20,
    d_head=8,
    d_mlp=96,
    n_heads=6,
    n_layers=3,
    layer_norm_eps=1e-6,
)


@pytest.mark.parametrize("cfg", [None, OTHER_CFG], ids=["check-config", "other-config"])
@pytest.mark.parametrize("check, cls", CORRECT, ids=[c.__name__ for c, _ in CORRECT])
def test_reference_passes(check, cls, cfg, capsys):
    check(cls, cfg)
    assert "passed" in capsys.readouterr().out


# ---------------------------------------------------------------- learner-style broken layers


class LNBroken(LayerNorm):
    mistake = None

    def forward(self, x):
        dim = -2 if self.mistake == "ln_wrong_dim" else -1
        mean = x.mean(dim, keepdim=True)
        if self.mistake == "ln_unbiased_var":
            std = x.std(dim, keepdim=True)
            return (x - mean) / (std**2 + self.cfg.layer_norm_eps).sqrt() * self.w + self.b
        var = x.var(dim, keepdim=True, unbiased=False)
        if self.mistake == "ln_eps_outside_sqrt":
            return (x - mean) / (var.sqrt() + self.cfg.layer_norm_eps) * self.w + self.b
        if self.mistake == "ln_no_mean":
            return x / (var + self.cfg.layer_norm_eps).sqrt() * self.w + self.b
        if self.mistake == "ln_no_eps":
            return (x - mean) / var.sqrt() * self.w + self.b
        return (x - mean) / (var + self.cfg.layer_norm_eps).sqrt() * self.w + self.b


class LNInPlace(LayerNorm):
    def forward(self, x):
        x -= x.mean(-1, keepdim=True)
        return (
            x / (x.var(-1, keepdim=True, unbiased=False) + self.cfg.layer_norm_eps).sqrt() * self.w
            + self.b
        )


class AttnBroken(Attention):
    """A learner's explicit attention (used for both attention paths), with one mistake."""

    mistake = None

    def attention_pattern(self, x):
        q = einops.einsum(x, self.W_Q, "b p d, h d e -> b p h e") + (
            0 if self.mistake == "attn_no_b_Q" else self.b_Q
        )
        k = einops.einsum(x, self.W_K, "b p d, h d e -> b p h e") + self.b_K
        scores = einops.einsum(q, k, "b q h e, b k h e -> b h q k")
        scores = scores / {
            "attn_scale_d_head": self.cfg.d_head,
            "attn_scale_d_model": math.sqrt(self.cfg.d_model),
            "attn_no_scale": 1,
            "attn_scale_after_softmax": 1,
            "attn_fixed_scale": 4.0,  # sqrt(16): the ci config's d_head, written in
        }.get(self.mistake, math.sqrt(self.cfg.d_head))
        n = x.shape[1]
        diagonal = {"attn_mask_diagonal": 0, "attn_mask_shows_next": 2}.get(self.mistake, 1)
        mask = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=diagonal)
        if self.mistake == "attn_mask_after_softmax":
            return scores.softmax(-1).masked_fill(mask, 0)
        if self.mistake != "attn_no_mask":
            scores = scores.masked_fill(mask, -1e5)
        if self.mistake == "attn_scale_after_softmax":
            return scores.softmax(-1) / math.sqrt(self.cfg.d_head)
        return scores.softmax(-2 if self.mistake == "attn_softmax_wrong_axis" else -1)

    def forward(self, x):
        v = einops.einsum(x, self.W_V, "b p d, h d e -> b p h e") + (
            0 if self.mistake == "attn_no_b_V" else self.b_V
        )
        z = einops.einsum(self.attention_pattern(x), v, "b h q k, b k h e -> b q h e")
        out = einops.einsum(z, self.W_O, "b q h e, h e d -> b q d")
        return out if self.mistake == "attn_no_b_O" else out + self.b_O


class MLPBroken(MLP):
    mistake = None

    def forward(self, x):
        pre = x @ self.W_in + (0 if self.mistake == "mlp_no_b_in" else self.b_in)
        post = (
            torch.nn.GELU()(pre)
            if self.mistake == "mlp_exact_gelu"
            else F.gelu(pre, approximate="tanh")
        )
        return post @ self.W_out + self.b_out


class BlockBroken(TransformerBlock):
    mistake = None

    def forward(self, x):
        if self.mistake == "block_post_ln":
            mid = self.ln1(x + self.attn(x))
            return self.ln2(mid + self.mlp(mid))
        mid = self.attn(self.ln1(x)) + (0 if self.mistake == "block_no_attn_residual" else x)
        return self.mlp(self.ln2(mid)) + (0 if self.mistake == "block_no_mlp_residual" else mid)


class PosBroken(PosEmbed):
    mistake = None

    def forward(self, tokens):
        if self.mistake == "pos_from_tokens":
            return self.W_pos[tokens]
        n = tokens.shape[1]
        return self.W_pos[1 : n + 1].expand(tokens.shape[0], -1, -1)  # pos_offset_by_one


class UnembedBroken(Unembed):
    def forward(self, x):
        return x @ self.W_U  # unembed_no_b_U


def _with(base, mistake):
    return type(f"{base.__name__}_{mistake}", (base,), {"mistake": mistake})


def _transformer_with(**parts):
    """A DemoTransformer whose sub-layers are replaced by broken ones, or whose forward skips
    ln_final."""
    skip_final_ln = parts.pop("skip_final_ln", False)

    class Broken(DemoTransformer):
        def __init__(self, cfg):
            super().__init__(cfg)
            for attr, cls in parts.items():
                setattr(self, attr, cls(cfg))

        def forward(self, tokens):
            if not skip_final_ln:
                return super().forward(tokens)
            x = self.embed(tokens) + self.pos_embed(tokens)
            for block in self.blocks:
                x = block(x)
            return self.unembed(x)

    return Broken


BROKEN = {
    **{
        m: (checks.check_layernorm, _with(LNBroken, m))
        for m in [
            "ln_eps_outside_sqrt",
            "ln_unbiased_var",
            "ln_no_mean",
            "ln_wrong_dim",
            "ln_no_eps",
        ]
    },
    **{
        m: (checks.check_attention, _with(AttnBroken, m))
        for m in [
            "attn_no_mask",
            "attn_mask_diagonal",
            "attn_mask_shows_next",
            "attn_mask_after_softmax",
            "attn_scale_d_head",
            "attn_scale_d_model",
            "attn_no_scale",
            "attn_scale_after_softmax",
            "attn_fixed_scale",
            "attn_softmax_wrong_axis",
            "attn_no_b_O",
            "attn_no_b_Q",
            "attn_no_b_V",
        ]
    },
    **{m: (checks.check_mlp, _with(MLPBroken, m)) for m in ["mlp_exact_gelu", "mlp_no_b_in"]},
    **{
        m: (checks.check_block, _with(BlockBroken, m))
        for m in ["block_post_ln", "block_no_attn_residual", "block_no_mlp_residual"]
    },
    "pos_from_tokens": (checks.check_pos_embed, _with(PosBroken, "pos_from_tokens")),
    "pos_offset_by_one": (checks.check_pos_embed, _with(PosBroken, "pos_offset_by_one")),
    "unembed_no_b_U": (checks.check_unembed, UnembedBroken),
    "no_final_ln": (checks.check_transformer, _transformer_with(skip_final_ln=True)),
}


@pytest.mark.parametrize(
    "mistake, part",
    [
        ("pos_from_tokens", dict(pos_embed=_with(PosBroken, "pos_from_tokens"))),
        ("pos_offset_by_one", dict(pos_embed=_with(PosBroken, "pos_offset_by_one"))),
        ("unembed_no_b_U", dict(unembed=UnembedBroken)),
    ],
)
def test_whole_model_check_names_a_broken_part(mistake, part):
    with pytest.raises(AssertionError) as err:
        checks.check_transformer(_transformer_with(**part))
    assert MISTAKES[mistake].likely_cause() in str(err.value), str(err.value)


def test_whole_model_check_catches_a_broken_block():
    class Broken(DemoTransformer):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.blocks = torch.nn.ModuleList(
                [_with(BlockBroken, "block_post_ln")(cfg) for _ in range(cfg.n_layers)]
            )

    with pytest.raises(AssertionError, match="post-LayerNorm"):
        checks.check_transformer(Broken)


def test_report_says_where_and_how_big():
    with pytest.raises(AssertionError) as err:
        checks.check_attention(_with(AttnBroken, "attn_mask_shows_next"))
    message = str(err.value)
    assert (
        "max |error|" in message and "first mismatch at (batch=" in message and "posn=" in message
    )


def test_in_place_modification_is_caught():
    with pytest.raises(AssertionError, match="modified its input in place"):
        checks.check_layernorm(LNInPlace)


def test_wrong_parameter_names_are_reported():
    class Renamed(LayerNorm):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.weight = self.w
            del self.w

        def forward(self, x):
            return x

    with pytest.raises(AssertionError, match="missing.*'w'"):
        checks.check_layernorm(Renamed)


def test_an_unknown_mistake_still_fails_with_general_advice():
    class Doubled(MLP):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(AssertionError, match="None of the known mistakes"):
        checks.check_mlp(Doubled)


def test_non_causal_block_is_caught_by_the_causality_probe():
    with pytest.raises(AssertionError, match="causal"):
        checks.check_block(_transformer_block_without_mask())


def _transformer_block_without_mask():
    class Block(TransformerBlock):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.attn = _with(AttnBroken, "attn_no_mask")(cfg)

    return Block


# ---------------------------------------------------------------- tokenizer checks (notebook 01)

import inspect  # noqa: E402

from utils import bpe, training  # noqa: E402


def test_tokenizer_and_training_checks_pass_the_reference(capsys):
    checks.check_merge_word(bpe.merge_word)
    checks.check_train_merges(bpe.train_merges)
    checks.check_bpe_tokenizer(bpe.BPETokenizer)
    checks.check_lr_at(training.lr_at)
    checks.check_make_optimizer(training.make_optimizer)
    checks.check_optimizer_step(training.optimizer_step)
    checks.check_next_token_accuracy(training.next_token_accuracy)
    assert capsys.readouterr().out.count("passed") == 7


def merge_no_skip(word, pair, new_id):  # forgets to jump past the merged pair
    out = []
    for i, token in enumerate(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
        elif not (i > 0 and (word[i - 1], word[i]) == pair):
            out.append(token)
    return out


def merge_in_place(word, pair, new_id):
    i = 0
    while i < len(word) - 1:
        if (word[i], word[i + 1]) == pair:
            word[i : i + 2] = [new_id]
        i += 1
    return word


@pytest.mark.parametrize(
    "fn, message",
    [
        (merge_no_skip, "overlapping"),
        (merge_in_place, "changed its input"),
        (lambda w, p, n: tuple(w), "returned"),
    ],
)
def test_merge_word_check_catches(fn, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_merge_word(fn)


def _broken_train_merges(old, new):
    source = inspect.getsource(bpe.train_merges)
    assert old in source
    namespace = dict(vars(bpe))
    exec(source.replace(old, new), namespace)
    return namespace["train_merges"]


def train_merges_calling(merge_word, how="directly"):
    """The reference train_merges as a learner would paste it, calling this merge_word (directly,
    through a helper of theirs, or given as a default argument)."""
    namespace = {**vars(bpe), "merge_word": merge_word}
    source = inspect.getsource(bpe.train_merges)
    call = "merge_word(word, pair, new_id)"
    assert source.count(call) == 1
    if how == "through a helper":
        source = source.replace(call, "apply_merge(word, pair, new_id)")
        source += (
            "\n\ndef apply_merge(word, pair, new_id):\n    return merge_word(word, pair, new_id)\n"
        )
    elif how == "as a default argument":
        source = source.replace("n_merges: int)", "n_merges: int, merge=merge_word)", 1)
        source = source.replace(call, "merge(word, pair, new_id)")
    exec(compile(source, "<learner's cell>", "exec"), namespace)
    return namespace["train_merges"]


def merge_word_recursive(word, pair, new_id):  # right, in another form
    if len(word) < 2:
        return list(word)
    if (word[0], word[1]) == pair:
        return [new_id] + merge_word_recursive(word[2:], pair, new_id)
    return [word[0]] + merge_word_recursive(word[1:], pair, new_id)


def test_train_merges_calling_a_right_merge_word_of_its_own_passes(capsys):
    checks.check_train_merges(train_merges_calling(merge_word_recursive))
    assert "train_merges passed" in capsys.readouterr().out


def merge_first_only(word, pair, new_id):  # replaces the first occurrence only
    for i in range(len(word) - 1):
        if (word[i], word[i + 1]) == pair:
            return word[:i] + [new_id] + word[i + 2 :]
    return list(word)


@pytest.mark.parametrize("how", ["directly", "through a helper", "as a default argument"])
@pytest.mark.parametrize("merge_word", [merge_no_skip, merge_first_only])
def test_train_merges_calling_a_wrong_merge_word_names_merge_word(merge_word, how):
    with pytest.raises(AssertionError) as err:
        checks.check_train_merges(train_merges_calling(merge_word, how))
    message = str(err.value)
    assert "train_merges calls your merge_word, and it is wrong: merge_word([" in message, message
    assert "checks.check_merge_word(merge_word)" in message, message
    assert "pushed back on the heap" not in message, message


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("pair_counts[old] -= count", "pass", "merge \\d+ is"),  # old pairs keep their counts
        (
            "words_with[new].add(w)",
            "pass",
            "(?s)raised KeyError: \\(\\d+, \\d+\\).*Likely cause: words_with has no entry",
        ),  # new pairs never find their words
        (
            "continue  # a stale heap entry",
            "pass  # a stale heap entry",
            "(?s)raised KeyError: \\(\\d+, \\d+\\).*Likely cause: words_with has no entry",
        ),  # an entry pushed before its pair was merged is merged again
        (
            "heapq.heappush(heap, (-pair_counts[p], p))",
            "pass",
            "learned \\d+ merges|merge \\d+ is",
        ),  # changed pairs never return
    ],
)
def test_train_merges_check_catches(old, new, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_train_merges(_broken_train_merges(old, new))


def train_merges_across_documents(text, n_merges):  # never splits on <|endoftext|>
    return bpe.train_merges(text.replace(bpe.END_OF_TEXT, ""), n_merges)


class LNFixedEps(LayerNorm):  # GPT-2's eps typed in, not the config's
    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / (var + 1e-5).sqrt() * self.w + self.b


class FirstPairBPE(
    bpe.BPETokenizer
):  # merges the leftmost mergeable pair instead of the lowest-ranked one
    def _bpe(self, piece):
        word = [self.byte_encoder[b] for b in piece.encode("utf-8")]
        merged_any = True
        while merged_any and len(word) > 1:
            merged_any = False
            for i in range(len(word) - 1):
                if (word[i], word[i + 1]) in self.merge_ranks:
                    word[i : i + 2] = [word[i] + word[i + 1]]
                    merged_any = True
                    break
        return [self.vocab[token] for token in word]


class PerTokenDecodeBPE(
    bpe.BPETokenizer
):  # decodes each token's bytes on its own: breaks characters split across tokens
    def decode(self, ids):
        return "".join(
            bytes(self.byte_decoder[c] for c in self.id_to_token[i]).decode(
                "utf-8", errors="replace"
            )
            for i in ids
        )


class UnmergedBPE(bpe.BPETokenizer):  # merges in a list of its own and leaves `word` as it was
    def _bpe(self, piece):
        word = [self.byte_encoder[b] for b in piece.encode("utf-8")]
        symbols = bpe.BPETokenizer._bpe(self, piece)  # noqa: F841 (the result, never used)
        return [self.vocab[tok] for tok in word]


class StrictJoinedDecodeBPE(bpe.BPETokenizer):  # joins the bytes, then decodes them strictly
    def decode(self, ids):
        return bytes(
            b for i in ids for b in map(self.byte_decoder.get, self.id_to_token[i])
        ).decode("utf-8")


class StrictDecodeBPE(
    bpe.BPETokenizer
):  # decodes each token strictly: a split character raises UnicodeDecodeError
    def decode(self, ids):
        return "".join(
            bytes(self.byte_decoder[c] for c in self.id_to_token[i]).decode("utf-8") for i in ids
        )


@pytest.mark.parametrize(
    "cls, message",
    [
        (FirstPairBPE, "LOWEST rank"),
        (PerTokenDecodeBPE, "(?s)decode\\(encode.*Likely cause: each token's bytes are decoded"),
        (
            StrictDecodeBPE,
            "(?s)raised UnicodeDecodeError.*Likely cause: each token's bytes are decoded",
        ),
        (UnmergedBPE, "(?s)Likely cause: these are the ids of the text's single bytes"),
        (
            StrictJoinedDecodeBPE,
            "(?s)half of an emoji.*raised UnicodeDecodeError.*Likely cause: the joined bytes are "
            "decoded strictly",
        ),
    ],
)
def test_bpe_tokenizer_check_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_bpe_tokenizer(cls)


# ---------------------------------------------------------------- training checks (notebook 03)


def lr_warmup_from_zero(step, args):
    return (
        args.lr * step / args.warmup_steps
        if step < args.warmup_steps
        else training.lr_at(step, args)
    )


def lr_decay_to_zero(step, args):
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / (args.max_steps - args.warmup_steps))
    return args.lr * 0.5 * (1 + math.cos(math.pi * progress))


def lr_unclamped(step, args):
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / (args.max_steps - args.warmup_steps)
    return args.lr * (
        args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def lr_floor_division(step, args):  # a learner's warmup: 0 for any lr below 1
    if step < args.warmup_steps:
        return args.lr * (step + 1) // args.warmup_steps
    return training.lr_at(step, args)


def lr_floor_division_in_progress(step, args):  # the progress stays 0 until max_steps
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1, (step - args.warmup_steps) // max(1, args.max_steps - args.warmup_steps))
    return args.lr * (
        args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def lr_warmup_from_zero_and_decay_to_zero(step, args):  # two mistakes: the first one is named
    if step < args.warmup_steps:
        return args.lr * step / args.warmup_steps
    return lr_decay_to_zero(step, args)


@pytest.mark.parametrize(
    "fn, message",
    [
        (lr_warmup_from_zero, "warmup starts at 0"),
        (lr_decay_to_zero, "ends at 0"),
        (lr_unclamped, "comes back up"),
        (lambda step, args: args.lr, "Things to check"),
        (lr_floor_division, "// is floor division"),  # at step 0 as the warmup from 0 gives
        (lr_floor_division_in_progress, "// is floor division"),
        (lr_warmup_from_zero_and_decay_to_zero, "warmup starts at 0"),
    ],
)
def test_lr_check_catches_and_names(fn, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_lr_at(fn)


def lr_as_float32_tensor(
    step, args
):  # right, computed in float32 torch and returned as a 0-d tensor
    if step < args.warmup_steps:
        return torch.tensor(args.lr * (step + 1) / args.warmup_steps)
    progress = torch.tensor(
        min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
    )
    return args.lr * (
        args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + torch.cos(torch.pi * progress))
    )


def lr_without_guard(
    step, args
):  # right, except when there is no decay phase (max_steps == warmup_steps)
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / (args.max_steps - args.warmup_steps))
    return args.lr * (
        args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def test_lr_check_accepts_a_0d_float32_tensor():
    checks.check_lr_at(lr_as_float32_tensor)


def lr_done_without_decay_phase(step, args):  # right: no decay phase counts as the decay done
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    if args.max_steps <= args.warmup_steps:
        progress = 1.0
    else:
        progress = min(1.0, (step - args.warmup_steps) / (args.max_steps - args.warmup_steps))
    return args.lr * (
        args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def test_lr_check_accepts_either_end_when_there_is_no_decay_phase(capsys):
    checks.check_lr_at(lr_done_without_decay_phase)
    assert "lr_at passed" in capsys.readouterr().out


def optimizer_ignores_requires_grad(model, args):  # the solution without its requires_grad filter
    source = inspect.getsource(training.make_optimizer)
    assert source.count(" if p.requires_grad]") == 1
    namespace = dict(vars(training))
    exec(source.replace(" if p.requires_grad]", "]"), namespace)
    return namespace["make_optimizer"](model, args)


def optimizer_misspelt_key(model, args):  # AdamW keeps "weight decay" and decays by 0.01
    source = inspect.getsource(training.make_optimizer)
    assert source.count('"weight_decay": args.weight_decay') == 1
    namespace = dict(vars(training))
    exec(source.replace('"weight_decay": args', '"weight decay": args'), namespace)
    return namespace["make_optimizer"](model, args)


def test_lr_check_needs_the_divide_by_zero_guard():
    with pytest.raises(AssertionError, match="lr_at\\(5, args\\) raised ZeroDivisionError"):
        checks.check_lr_at(lr_without_guard)


class PosBroadcast(
    PosEmbed
):  # right: [posn, d_model], broadcast over the batch when added to the token embeddings
    def forward(self, tokens):
        return self.W_pos[: tokens.shape[1]]


def test_pos_embed_check_accepts_broadcasting():
    checks.check_pos_embed(PosBroadcast)


class PosDetached(PosEmbed):  # right values, but W_pos never trains
    def forward(self, tokens):
        return self.W_pos[: tokens.shape[1]].detach().clone()


class EmbedFromData(Embed):  # right values, but W_E never trains
    def forward(self, tokens):
        return self.W_E.data[tokens]


class PosFloat64(PosEmbed):
    def forward(self, tokens):
        return self.W_pos[: tokens.shape[1]].double()


class PosOneRow(PosEmbed):  # right: [1, posn, d_model] broadcasts over the batch
    def forward(self, tokens):
        return self.W_pos[: tokens.shape[1]].unsqueeze(0).clone()


@pytest.mark.parametrize(
    "check, cls, message",
    [
        (checks.check_pos_embed, PosDetached, "no gradient to W_pos"),
        (checks.check_embed, EmbedFromData, "no gradient to W_E"),
        (checks.check_pos_embed, PosFloat64, "the output is float64, expected float32"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_layer_checks_refuse_right_values_that_would_not_train_or_mix_dtypes(check, cls, message):
    with pytest.raises(AssertionError, match=message):
        check(cls)


def test_pos_embed_check_accepts_one_row_of_batch(capsys):
    checks.check_pos_embed(PosOneRow)
    assert "passed" in capsys.readouterr().out


class PosRepeatNoClone(PosEmbed):  # right values, but a view of W_pos: a hook's edit edits it
    def forward(self, tokens):
        batch, posn = tokens.shape
        return einops.repeat(self.W_pos[:posn], "posn d -> batch posn d", batch=batch)


@pytest.mark.parametrize(
    "cls, noted", [(PosEmbed, False), (PosRepeatNoClone, True), (PosBroadcast, True)]
)
def test_pos_embed_check_notes_a_view_of_the_weights(cls, noted, capsys):
    checks.check_pos_embed(cls)
    out = capsys.readouterr().out
    assert "passed" in out
    assert ("returns a view of W_pos" in out) == noted, out


def optimizer_decay_everything(model, args):
    return torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=args.betas, weight_decay=args.weight_decay
    )


def optimizer_decay_only(model, args):
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.ndim >= 2],
        lr=args.lr,
        betas=args.betas,
        weight_decay=args.weight_decay,
    )


def optimizer_default_lr(model, args):
    groups = [
        {
            "params": [p for p in model.parameters() if p.ndim >= 2],
            "weight_decay": args.weight_decay,
        },
        {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups)


def optimizer_by_ndim(model, args):  # the nanoGPT shortcut: decays the 2-D biases b_Q, b_K, b_V
    groups = [
        {
            "params": [p for p in model.parameters() if p.ndim >= 2],
            "weight_decay": args.weight_decay,
        },
        {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.lr, betas=args.betas)


def optimizer_no_decay_on_any_bias(model, args):  # right: what the prose asks, by name
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {
            "params": [p for n, p in named if ".b_" not in n and not n.endswith((".w", ".b"))],
            "weight_decay": args.weight_decay,
        },
        {
            "params": [p for n, p in named if ".b_" in n or n.endswith((".w", ".b"))],
            "weight_decay": 0.0,
        },
    ]
    return torch.optim.AdamW(groups, lr=args.lr, betas=args.betas)


def _adamw_with(**options):
    """The right groups, lr and betas, and other AdamW options: another optimizer."""

    def make_optimizer(model, args):
        groups = optimizer_no_decay_on_any_bias(model, args).param_groups
        return torch.optim.AdamW(
            [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in groups],
            lr=args.lr,
            betas=args.betas,
            **options,
        )

    return make_optimizer


def test_optimizer_check_accepts_decay_decided_by_name(capsys):
    checks.check_make_optimizer(optimizer_no_decay_on_any_bias)
    # 9 weight matrices and embeddings; the frozen one is a bias (b_Q)
    assert (
        "decay on the 9 weight matrices and embeddings (W_...) only, the frozen one left out"
        in " ".join(capsys.readouterr().out.split())  # the message as one line, unwrapped
    )


@pytest.mark.parametrize(
    "fn, message",
    [
        (optimizer_decay_everything, r"ln1.w \(not a weight matrix\) has weight_decay"),
        (optimizer_decay_only, "not being trained"),
        (optimizer_by_ndim, "Likely cause: the 'decay tensors with ndim >= 2' rule"),
        (optimizer_default_lr, "use args.lr"),
        (lambda model, args: torch.optim.SGD(model.parameters(), lr=args.lr), "AdamW"),
        (_adamw_with(amsgrad=True, eps=1e-3), r"sets \{'eps': 0.001, 'amsgrad': True\}"),
        (_adamw_with(eps=1e-6), r"sets \{'eps': 1e-06\}; leave AdamW's eps=1e-08"),
        (_adamw_with(maximize=True), r"'maximize': True"),
        (
            optimizer_misspelt_key,
            r"has the key 'weight decay', which AdamW does not know: .* its own weight_decay "
            r"\(0\.01\) instead\. Write 'weight_decay'\.",
        ),
    ],
)
def test_optimizer_check_catches(fn, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_make_optimizer(fn)


def step_no_zero_grad(model, optimizer, loss, grad_clip):
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


def step_zero_first(
    model, optimizer, loss, grad_clip
):  # the classic order: right without accumulation, wrong with it
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


def step_before_backward(model, optimizer, loss, grad_clip):
    optimizer.step()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.zero_grad()
    return loss.detach()


def step_zero_grad_before_step(model, optimizer, loss, grad_clip):
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.zero_grad()
    optimizer.step()
    return loss.detach()


def step_clip_before_backward(model, optimizer, loss, grad_clip):
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


def step_no_clip(model, optimizer, loss, grad_clip):
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


def step_clip_after(model, optimizer, loss, grad_clip):
    loss.backward()
    optimizer.step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.zero_grad()
    return loss.detach()


def step_returns_attached(model, optimizer, loss, grad_clip):
    training.optimizer_step(model, optimizer, loss, grad_clip)
    return loss


def step_returns_nothing(model, optimizer, loss, grad_clip):
    training.optimizer_step(model, optimizer, loss, grad_clip)


def step_returns_item(model, optimizer, loss, grad_clip):  # accepted: right, only slower on a GPU
    training.optimizer_step(model, optimizer, loss, grad_clip)
    return loss.item()


def step_clips_one_group(
    model, optimizer, loss, grad_clip
):  # make_optimizer's second group escapes the clipping
    loss.backward()
    torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


@pytest.mark.parametrize(
    "fn, message",
    [
        (step_no_zero_grad, "never cleared"),
        (step_zero_first, "earlier micro-batches"),
        (step_no_clip, "not clipped"),
        (step_clip_after, "not clipped before"),
        (step_returns_attached, "loss.detach"),
        (step_returns_nothing, "returned None"),
        (step_clips_one_group, "differ from the reference"),
    ],
)
def test_optimizer_step_check_catches_and_names(fn, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_optimizer_step(fn)


def test_optimizer_step_check_accepts_a_float_and_says_why_a_tensor_is_better(capsys):
    checks.check_optimizer_step(step_returns_item)
    out = capsys.readouterr().out
    assert out.startswith("optimizer_step passed") and "return loss.detach() instead" in out


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda logits, tokens: (logits.argmax(-1) == tokens).float().mean().item(), "no shift"),
        (
            lambda logits, tokens: float((logits[:, :-1].argmax(-1) == tokens[:, 1:]).sum()),
            "a count",
        ),
        (
            lambda logits, tokens: (logits[:, :-1].argmax(-1) == tokens[:, 1:]).float().mean(),
            "Python float",
        ),
        (
            lambda logits, tokens: (
                (logits[:, 1:].argmax(-1) == tokens[:, :-1]).float().mean().item()
            ),
            "the shift goes the wrong way",
        ),
        (  # a softmax in place: the right accuracy, the caller's logits changed
            lambda logits, tokens: (
                (logits.exp_()[:, :-1].argmax(-1) == tokens[:, 1:]).float().mean().item()
            ),
            "changed the tensor given as its argument 1 in place",
        ),
    ],
)
def test_accuracy_check_catches(fn, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_next_token_accuracy(fn)


def test_exercise_stubs_reach_the_learner_unwrapped():
    class Stub(LayerNorm):
        def forward(self, x):
            raise NotImplementedError("normalise over d_model")

    with pytest.raises(NotImplementedError, match="normalise over d_model"):
        checks.check_layernorm(Stub)
    with pytest.raises(NotImplementedError, match="write it"):
        checks.check_lr_at(
            lambda step, args: (_ for _ in ()).throw(NotImplementedError("write it"))
        )


def test_every_check_is_registered_for_make_check():
    public = {name for name in dir(checks) if name.startswith("check_")}
    assert {f.__name__ for f in checks.CHECKS.values()} == public


# ----------------------------------------------------------- every method of the attention exercise


class AttnScoresAsPattern(
    Attention
):  # attention_pattern forgets the softmax; forward applies it: the output is right
    def attention_pattern(self, x):
        q = einops.einsum(x, self.W_Q, "b p d, h d e -> b p h e") + self.b_Q
        k = einops.einsum(x, self.W_K, "b p d, h d e -> b p h e") + self.b_K
        return self.apply_causal_mask(
            einops.einsum(q, k, "b q h e, b k h e -> b h q k") / math.sqrt(self.cfg.d_head)
        )

    def forward(self, x):
        v = einops.einsum(x, self.W_V, "b p d, h d e -> b p h e") + self.b_V
        z = einops.einsum(self.attention_pattern(x).softmax(-1), v, "b h q k, b k h e -> b q h e")
        return einops.einsum(z, self.W_O, "b q h e, h e d -> b q d") + self.b_O


def _mask_with(fill=None, diagonal=1, lower=False):
    def apply_causal_mask(self, scores):
        n = scores.shape[-1]
        ones = torch.ones(n, n, dtype=torch.bool)
        hide = torch.tril(ones, diagonal=-1) if lower else torch.triu(ones, diagonal=diagonal)
        return scores.masked_fill(hide, self.IGNORE if fill is None else fill)

    return type("AttnMask", (Attention,), {"apply_causal_mask": apply_causal_mask})


@pytest.mark.parametrize(
    "cls, message",
    [
        (
            AttnScoresAsPattern,
            "(?s)attention_pattern: its rows do not sum to 1.*returns the masked scores, "
            "not probabilities",
        ),
        (_mask_with(fill=0.0), "(?s)filled with 0.*not causal"),
        (_mask_with(diagonal=0), "also hides the diagonal"),
        (_mask_with(diagonal=2), "off by one and lets each position see the next token"),
        (_mask_with(lower=True), "past positions"),
    ],
)
def test_attention_check_tests_each_method(cls, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_attention(cls)


def test_attention_check_accepts_arenas_large_negative_fill():
    checks.check_attention(_mask_with(fill=-1e5))


# ----------------------------------------------------- what the learner sees when their code raises


class LayerNormShapeBug(LayerNorm):
    def forward(self, residual):
        mean = residual.mean(dim=-1)  # no keepdim: does not broadcast back
        return (residual - mean) * self.w + self.b


class LayerNormStub(LayerNorm):
    def forward(self, residual):
        raise NotImplementedError("normalise over d_model")


def test_an_error_in_the_learners_code_names_their_line():
    with pytest.raises(
        AssertionError,
        match=r"In your code: forward, line \d+: return \(residual - mean\) \* self.w \+ self.b",
    ):
        checks.check_layernorm(LayerNormShapeBug)


def test_a_stub_is_raised_from_its_own_line_without_torchs_frames():
    with pytest.raises(NotImplementedError, match="normalise over d_model") as info:
        checks.check_layernorm(LayerNormStub)
    frames = traceback.extract_tb(info.value.__traceback__)
    assert frames[-1].name == "forward" and frames[-1].filename == __file__
    package = Path(checks.__file__).resolve().parent
    assert not any(
        "torch" in f.filename
        or Path(f.filename).resolve().parent == package
        and f.name != "run_check"
        for f in frames
    )


def naive_train_merges(text, n_merges):
    """Recounts every pair before each merge (slow but right), then takes the first most frequent
    pair it meets: ties by dict order."""
    from collections import Counter

    from utils.bpe import END_OF_TEXT, bytes_to_unicode, merge_word, pretokenize

    tokens = list(bytes_to_unicode().values())
    byte_id = {b: i for i, b in enumerate(bytes_to_unicode())}
    words = Counter(w for chunk in text.split(END_OF_TEXT) for w in pretokenize(chunk))
    ids = {w: [byte_id[b] for b in w.encode("utf-8")] for w in words}
    merges = []
    for k in range(n_merges):
        counts = Counter()
        for w, n in words.items():
            for pair in zip(ids[w], ids[w][1:]):
                counts[pair] += n
        pair = max(counts, key=counts.get)
        merges.append(pair)
        tokens.append(tokens[pair[0]] + tokens[pair[1]])
        ids = {w: merge_word(i, pair, 256 + k) for w, i in ids.items()}
    return tokens, merges


def test_train_merges_check_names_a_tie():
    with pytest.raises(
        AssertionError, match=r"(?s)Likely cause: a tie\. Both pairs occur \d+ times"
    ):
        checks.check_train_merges(naive_train_merges)


def test_train_merges_check_tells_a_lost_pair_from_a_tie():
    """Pairs whose count went down are not pushed back: at merge 19 the expected pair is as
    frequent as the one merged, but it left the heap (merged 6 merges later), so a tie-break
    by dict order is not the cause."""
    with pytest.raises(AssertionError) as err:
        checks.check_train_merges(_broken_train_merges("touched.add(old)", "pass"))
    message = str(err.value)
    assert (
        "Both pairs occur 5 times at this point, but yours merges the expected one only at "
        "merge 25: it was missing from the heap" in message
    ), message
    assert not names(message, "merges_tie_by_dict_order"), message


def step_clip_value(model, optimizer, loss, grad_clip):
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


def step_clip_at_one(model, optimizer, loss, grad_clip):
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


@pytest.mark.parametrize(
    "fn, message",
    [
        (step_clip_value, "clip_grad_value_ clips each gradient entry"),
        (step_clip_at_one, "clipped to 1.0, not to grad_clip"),
    ],
)
def test_optimizer_step_check_names_clipping_mistakes(fn, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_optimizer_step(fn)


def test_a_few_wrong_entries_are_counted_not_rounded_to_zero():
    got = torch.zeros(2, 50, 64)
    got[0, 3, 7] = 1.0
    with pytest.raises(AssertionError, match=r"1 of 6,400 \(under 0.1%\) of entries differ"):
        model_checks._compare("Layer", got, torch.zeros(2, 50, 64), "batch posn d_model", "generic")


# -------------------------------------- every known mistake, in every notebook, is caught and named


def lr_no_warmup(step, args):
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
    return args.lr * (
        args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def lr_linear_decay(step, args):
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * (1 - progress))


def lr_progress_from_zero(step, args):
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = min(1.0, step / args.max_steps)
    return args.lr * (
        args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


BROKEN = {  # known mistake -> (its check, learner-style code that makes it)
    **BROKEN,
    "attn_mask_fill_zero": (checks.check_attention, _mask_with(fill=0.0)),
    "attn_mask_hides_past": (checks.check_attention, _mask_with(lower=True)),
    "attn_pattern_no_softmax": (checks.check_attention, AttnScoresAsPattern),
    "merges_tie_by_dict_order": (checks.check_train_merges, naive_train_merges),
    "merges_across_documents": (checks.check_train_merges, train_merges_across_documents),
    "ln_fixed_eps": (checks.check_layernorm, LNFixedEps),
    "merges_wrong_merge_word": (checks.check_train_merges, train_merges_calling(merge_no_skip)),
    "decode_per_token": (checks.check_bpe_tokenizer, StrictDecodeBPE),
    "decode_strict": (checks.check_bpe_tokenizer, StrictJoinedDecodeBPE),
    "bpe_no_merge_kept": (checks.check_bpe_tokenizer, UnmergedBPE),
    "merges_pair_not_in_words_with": (
        checks.check_train_merges,
        _broken_train_merges("words_with[new].add(w)", "pass"),
    ),
    "lr_warmup_from_zero": (checks.check_lr_at, lr_warmup_from_zero),
    "lr_decay_to_zero": (checks.check_lr_at, lr_decay_to_zero),
    "lr_no_warmup": (checks.check_lr_at, lr_no_warmup),
    "lr_linear_decay": (checks.check_lr_at, lr_linear_decay),
    "lr_progress_from_zero": (checks.check_lr_at, lr_progress_from_zero),
    "lr_unclamped": (checks.check_lr_at, lr_unclamped),
    "lr_floor_division": (checks.check_lr_at, lr_floor_division),
    "decay_by_ndim": (checks.check_make_optimizer, optimizer_by_ndim),
    "optimizer_trains_frozen": (checks.check_make_optimizer, optimizer_ignores_requires_grad),
    "step_zero_grad_first": (checks.check_optimizer_step, step_zero_first),
    "step_no_zero_grad": (checks.check_optimizer_step, step_no_zero_grad),
    "step_no_clip": (checks.check_optimizer_step, step_no_clip),
    "step_clip_value": (checks.check_optimizer_step, step_clip_value),
    "step_clip_at_1": (checks.check_optimizer_step, step_clip_at_one),
    "step_before_backward": (checks.check_optimizer_step, step_before_backward),
    "step_zero_grad_before_step": (checks.check_optimizer_step, step_zero_grad_before_step),
    "step_clip_before_backward": (checks.check_optimizer_step, step_clip_before_backward),
    "accuracy_no_shift": (
        checks.check_next_token_accuracy,
        lambda logits, tokens: (logits.argmax(-1) == tokens).float().mean().item(),
    ),
    "accuracy_targets_unshifted": (
        checks.check_next_token_accuracy,
        lambda logits, tokens: (logits[:, :-1].argmax(-1) == tokens[:, :-1]).float().mean().item(),
    ),
    "accuracy_shift_reversed": (
        checks.check_next_token_accuracy,
        lambda logits, tokens: (logits[:, 1:].argmax(-1) == tokens[:, :-1]).float().mean().item(),
    ),
    "accuracy_tensor": (
        checks.check_next_token_accuracy,
        lambda logits, tokens: (logits[:, :-1].argmax(-1) == tokens[:, 1:]).float().mean(),
    ),
    "accuracy_count": (
        checks.check_next_token_accuracy,
        lambda logits, tokens: float((logits[:, :-1].argmax(-1) == tokens[:, 1:]).sum()),
    ),
}


from test_checks_warmup import WARMUP_PARTS  # noqa: E402 (beside the one test that needs it)


def test_every_mistake_has_a_broken_variant():
    # notebook 04's logit functions and beam search have theirs in tests/test_checks_sampling.py,
    # the KV cache's in tests/test_sampling.py, notebook 05's in tests/test_checks_circuits.py
    elsewhere = {
        "apply_temperature",
        "apply_frequency_penalty",
        "apply_top_k",
        "apply_top_p",
        "beam_search",
        "forward_with_cache",
        "direct_logit_attribution",
        "induction_score",
        "ablate_heads",
        *("patch_effect", "patch_residual_stream", "patch_head_outputs"),  # notebook 07's:
        *("ov_circuit", "copying_score", "composition_score"),  # tests/test_checks_patching.py
        *WARMUP_PARTS,  # notebook 00's: tests/test_checks_warmup.py
        "rows_for_rank",  # notebook 06's: tests/test_checks_scaling.py
        "mean_over_ranks",
        "backward_micro_batches",
    }
    assert set(BROKEN) == {name for name, m in MISTAKES.items() if m.part not in elsewhere}


@pytest.mark.parametrize("mistake", sorted(BROKEN))
def test_check_catches_mistake_and_names_it(mistake):
    check, broken = BROKEN[mistake]
    with pytest.raises(AssertionError) as err:
        check(broken)
    # the advice's {fields} (facts about this failure) may hold anything
    advice = re.sub(r"\\\{\w+\\\}", ".+", re.escape(MISTAKES[mistake].likely_cause()))
    assert re.search(advice, str(err.value)), str(err.value)


def test_every_mistake_belongs_to_a_checked_exercise_and_is_declared_once():
    assert all(m.part.split(".")[0] in checks.CHECKS for m in MISTAKES.values())
    with pytest.raises(ValueError, match="declared twice"):
        checks.known_mistake("ln_no_mean", "LayerNorm", "again")


# ----------------------------------------- labels follow the dimension names; odd configs; symlinks


def test_a_pattern_mismatch_lists_query_positions_by_their_name():
    with pytest.raises(AssertionError) as err:
        checks.check_attention(_with(AttnBroken, "attn_no_scale"))
    message = str(err.value)
    assert "(batch=0, n_heads=" in message and re.search(
        r"\n  query positions with errors: \[\d", message
    ), message


def test_a_mask_of_the_wrong_shape_is_labelled_with_its_dimensions():
    class MaskOneHead(Attention):
        def apply_causal_mask(self, scores):
            return super().apply_causal_mask(scores)[:, 0]

    with pytest.raises(
        AssertionError,
        match=r"expected the scores' shape \(2, 5, 5, 5\) \(batch, n_heads, query_posn, key_posn\)",
    ):
        checks.check_attention(MaskOneHead)


def test_whole_model_check_works_with_a_vocabulary_smaller_than_the_sequence(capsys):
    """Token ids, and the causality probe's changed ids, stay below d_vocab (or GPT-2 itself would
    fail on them)."""
    checks.check_transformer(DemoTransformer, replace(OTHER_CFG, d_vocab=3))
    assert "DemoTransformer passed" in capsys.readouterr().out


def test_frames_in_a_symlinked_environment_are_not_the_learners(tmp_path):
    """A virtual environment reached through a link (a shared .venv, conda) names torch's files by
    the link in tracebacks."""
    link = tmp_path / "venv-link"
    os.symlink(Path(torch.__file__).resolve().parent, link)
    assert not checks_core.is_yours(str(link / "nn" / "modules" / "module.py"))
    assert checks_core.is_yours(__file__)


def test_the_standard_librarys_frozen_modules_are_not_the_learners():
    """os.environ["WORLD_SIZE"] raising KeyError named "<frozen os>", line 679, as "your code"."""
    assert not checks_core.is_yours("<frozen os>")
    assert checks_core.is_yours("/tmp/ipykernel_1/2.py")


def test_a_failing_check_in_a_jupyter_kernel_shows_the_message_without_the_checks_frames():
    """In Jupyter the learner sees the message alone: IPython never hides the frame that raised,
    which without CheckFailed._render_traceback_ is learner_facing's, in utils/checks/core.py."""
    kernel_manager = pytest.importorskip("jupyter_client.manager")
    manager, client = kernel_manager.start_new_kernel(
        kernel_name="python3", cwd=str(Path(__file__).resolve().parent.parent)
    )
    errors = []
    try:
        client.execute_interactive(
            "from utils import checks\n"
            "def apply_temperature(logits, temperature):\n"
            "    return logits * temperature\n"
            "checks.check_temperature(apply_temperature)",
            timeout=120,
            output_hook=lambda msg: msg["msg_type"] == "error" and errors.append(msg["content"]),
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert len(errors) == 1, errors
    shown = without_colours("\n".join(errors[0]["traceback"]))
    assert "utils/checks" not in shown and "core.py" not in shown, shown
    assert shown.startswith("AssertionError: apply_temperature(logits, temperature=0.5)"), shown
    assert "Likely cause: the logits are multiplied by the temperature" in shown, shown


# ---------------------------------------------------------------- notebook 03's checks, round 8


def _optimizer_groups(model, args, decay_if):
    decay = [p for n, p in model.named_parameters() if p.requires_grad and decay_if(n)]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not decay_if(n)]
    return [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]


def optimizer_pos_embed_not_decayed(model, args):
    groups = _optimizer_groups(model, args, lambda n: ".W_" in "." + n and "pos" not in n)
    return torch.optim.AdamW(groups, lr=args.lr, betas=args.betas)


def optimizer_betas_hard_coded(model, args):
    groups = _optimizer_groups(model, args, lambda n: n.split(".")[-1].startswith("W_"))
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95))


def optimizer_freezes_the_rest(model, args):
    for name, p in model.named_parameters():
        if not name.split(".")[-1].startswith("W_"):
            p.requires_grad_(False)
    return optimizer_betas_right(model, args)


def optimizer_decays_by_hand(model, args):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split(".")[-1].startswith("W_"):
                p.mul_(1 - args.weight_decay)
    return optimizer_betas_right(model, args)


def optimizer_decay_times_lr(model, args):
    groups = _optimizer_groups(model, args, lambda n: n.split(".")[-1].startswith("W_"))
    groups[0]["weight_decay"] = args.weight_decay * args.lr
    return torch.optim.AdamW(groups, lr=args.lr, betas=args.betas)


def optimizer_betas_right(model, args):
    groups = _optimizer_groups(model, args, lambda n: n.split(".")[-1].startswith("W_"))
    return torch.optim.AdamW(groups, lr=args.lr, betas=args.betas)


def step_clips_without_a_guard(model, optimizer, loss, grad_clip):
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    for g in grads:
        g.mul_(grad_clip / norm)  # scales small gradients up too
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


def step_averages_the_gradients(model, optimizer, loss, grad_clip):
    loss.backward()
    for p in model.parameters():
        p.grad /= 2  # the two micro-batches were already divided by the caller
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


def lr_warmup_without_guard_at_zero(step, args):
    if step <= args.warmup_steps:
        return args.lr * min(1, (step + 1) / args.warmup_steps)
    return training.lr_at(step, args)


@pytest.mark.parametrize(
    "check, fn, message",
    [
        (checks.check_make_optimizer, optimizer_pos_embed_not_decayed, "pos_embed.W_pos"),
        (checks.check_make_optimizer, optimizer_betas_hard_coded, "use args.lr and args.betas"),
        (checks.check_make_optimizer, optimizer_freezes_the_rest, "changed requires_grad"),
        (checks.check_make_optimizer, optimizer_decays_by_hand, "changed the weights"),
        (checks.check_make_optimizer, optimizer_decay_times_lr, "the right parameters are decayed"),
        (checks.check_optimizer_step, step_clips_without_a_guard, "weights differ"),
        (checks.check_optimizer_step, step_averages_the_gradients, "weights differ"),
        (checks.check_lr_at, lr_warmup_without_guard_at_zero, "ZeroDivisionError"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_training_checks_refuse_what_their_cases_used_to_hide(check, fn, message):
    with pytest.raises(AssertionError, match=message):
        check(fn)


def test_lr_check_accepts_a_numpy_number(capsys):
    checks.check_lr_at(lambda step, args: np.float32(training.lr_at(step, args)))
    assert "passed" in capsys.readouterr().out


def test_accuracy_check_names_a_numpy_number():
    with pytest.raises(AssertionError, match="a numpy number"):
        checks.check_next_token_accuracy(
            lambda logits, tokens: np.float32(training.next_token_accuracy(logits, tokens))
        )


# ---------------------------------------------------------------- notebook 01's checks, round 8


def merge_word_first_id_only(word, pair, new_id):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0]:  # pair[1] never compared
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def merge_word_by_string_replace(word, pair, new_id):
    text = " ".join(map(str, word)).replace(f"{pair[0]} {pair[1]}", str(new_id))
    return [int(part) for part in text.split()]


def train_merges_swapped(text, n_merges):
    tokens, merges = bpe.train_merges(text, n_merges)
    return merges, tokens


def train_merges_without_new_tokens(text, n_merges):
    tokens, merges = bpe.train_merges(text, n_merges)
    return tokens[:256], merges  # as if tokens.append(...) were forgotten


class TokenizerTiesToTheRight(bpe.BPETokenizer):
    def _bpe(self, piece):
        word = [self.byte_encoder[b] for b in piece.encode("utf-8")]
        while len(word) >= 2:
            ranked = [
                (self.merge_ranks[pair], -i)
                for i, pair in enumerate(zip(word, word[1:]))
                if pair in self.merge_ranks
            ]
            if not ranked:
                break
            i = -min(ranked)[1]  # among equal ranks, the rightmost pair
            word[i : i + 2] = [word[i] + word[i + 1]]
        return [self.vocab[token] for token in word]


@pytest.mark.parametrize(
    "check, fn, message",
    [
        (checks.check_merge_word, merge_word_first_id_only, "only when both ids are equal"),
        (checks.check_merge_word, merge_word_by_string_replace, "only when both ids are equal"),
        (
            checks.check_merge_word,
            lambda word, pair, new_id: tuple(bpe.merge_word(word, pair, new_id)),
            r"returned the tuple \(9, 3, 9\): the right ids, but a word is a list of ids",
        ),
        (checks.check_train_merges, train_merges_swapped, "tokens first, a list of strings"),
        (checks.check_train_merges, train_merges_without_new_tokens, "returned 256 tokens for 80"),
        (checks.check_bpe_tokenizer, TokenizerTiesToTheRight, "aaa"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_tokenisation_checks_refuse_what_their_cases_used_to_hide(check, fn, message):
    with pytest.raises(AssertionError, match=message):
        check(fn)


class AttentionWithoutKeyBias(Attention):  # right: q . b_K is the same for every key of a query
    def attention_pattern(self, x):
        q = einops.einsum(x, self.W_Q, "b p d, h d e -> b p h e") + self.b_Q
        k = einops.einsum(x, self.W_K, "b p d, h d e -> b p h e")
        scores = einops.einsum(q, k, "b q h e, b k h e -> b h q k") / math.sqrt(self.cfg.d_head)
        return self.apply_causal_mask(scores).softmax(-1)


def test_attention_without_the_key_bias_passes(capsys):
    checks.check_attention(AttentionWithoutKeyBias)
    assert "passed" in capsys.readouterr().out


class PatternInFloat64(Attention):
    def attention_pattern(self, x):
        return super().attention_pattern(x).double()


class PatternScaledAfterSoftmax(Attention):  # by a factor that is no known mistake's
    def attention_pattern(self, x):
        return super().attention_pattern(x) * 2


class BlockWithoutAttnOnly(TransformerBlock):  # forgets notebook 05's attention-only blocks
    def forward(self, resid_pre):
        resid_mid = resid_pre + self.attn(self.ln1(resid_pre))
        return resid_mid + self.mlp(self.ln2(resid_mid))


class BlockAlwaysWithMLP(TransformerBlock):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.ln2, self.mlp = self.LayerNorm(cfg), self.MLP(cfg)

    def forward(self, resid_pre):
        resid_mid = resid_pre + self.attn(self.ln1(resid_pre))
        return resid_mid if self.cfg.attn_only else resid_mid + self.mlp(self.ln2(resid_mid))


@pytest.mark.parametrize(
    "check, cls, message",
    [
        (
            checks.check_attention,
            PatternInFloat64,
            r"^Attention.attention_pattern: the output is float64, expected float32",
        ),
        (
            checks.check_attention,
            PatternScaledAfterSoftmax,
            r"no entry is negative, but its rows sum to 2 over the key positions, not 1",
        ),
        (
            checks.check_block,
            BlockWithoutAttnOnly,
            r"^TransformerBlock\(cfg with attn_only=True\).forward raised AttributeError: .*'mlp'",
        ),
        (
            checks.check_block,
            BlockAlwaysWithMLP,
            r"(?s)^TransformerBlock\(cfg with attn_only=True\): .* unexpected: \{'ln2.w'.*\n"
            r"  with cfg.attn_only a block has no ln2 and no mlp: build them if not cfg.attn_only",
        ),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_other_broken_layers_fail_with_a_message_that_fits(check, cls, message):
    """Wrong layers that no known mistake describes: one message that says what is wrong (a
    pattern of another dtype once raised a RuntimeError from inside the check)."""
    with pytest.raises(AssertionError, match=message) as err:
        check(cls)
    assert "Likely cause" not in str(err.value), str(err.value)


def test_the_check_config_has_sizes_no_run_config_has():
    """A size written into a layer as a number (16 for ci's d_head) must fail the layer checks."""
    from utils.checks.model import CHECK_CFG
    from utils.configs import CONFIGS

    for run in CONFIGS.values():
        for size in ("d_model", "n_heads", "d_head", "d_mlp"):
            assert getattr(CHECK_CFG, size) != run.model[size], (run.name, size)


def test_a_pos_embed_without_the_batch_axis_passes_with_a_note(capsys):
    class PosEmbedUnbatched(PosEmbed):  # as nanoGPT's: [posn, d_model], broadcast when added
        def forward(self, tokens):
            return self.W_pos[: tokens.shape[1]].clone()

    checks.check_pos_embed(PosEmbedUnbatched)
    out = capsys.readouterr().out
    assert "passed" in out and "returns [posn, d_model], without the batch dimension" in out
    checks.check_pos_embed(PosEmbed)
    assert "without the batch dimension" not in capsys.readouterr().out


@pytest.mark.parametrize("check, cls", CORRECT[:2], ids=[c.__name__ for c, _ in CORRECT[:2]])
def test_a_layer_check_leaves_the_learners_random_state_as_it_was(check, cls, capsys):
    """The checks seed their own weights; a notebook's later random draws (its reference model,
    its samples) must not depend on which checks ran before."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    check(cls)
    assert torch.equal(torch.get_rng_state(), before)


class AttentionWithMaskBuffer(Attention):  # TransformerLens's persistent mask buffer
    def __init__(self, cfg):
        super().__init__(cfg)
        ones = torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool)
        self.register_buffer("mask", torch.tril(ones))


def test_a_persistent_buffer_is_named_as_such():
    """Right outputs, but a buffer in the state_dict, which GPT-2's weights lack: the message says
    so and how to keep it (it read as a layout mistake)."""
    with pytest.raises(AssertionError, match=r"unexpected: \{'mask': \(32, 32\)\}") as err:
        checks.check_attention(AttentionWithMaskBuffer)
    assert "mask: a buffer, saved in the state_dict like a parameter" in str(err.value)
    assert "register_buffer(..., persistent=False)" in str(err.value)
