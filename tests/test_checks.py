"""Every layer check passes the reference implementation and catches each known mistake, naming it."""

import math

import einops
import pytest
import torch
import torch.nn.functional as F

from utils import checks
from utils.checks import MISTAKES
from utils.model import MLP, Attention, Config, DemoTransformer, Embed, LayerNorm, PosEmbed, TransformerBlock, Unembed

CORRECT = [
    (checks.check_layernorm, LayerNorm), (checks.check_embed, Embed), (checks.check_pos_embed, PosEmbed),
    (checks.check_attention, Attention), (checks.check_mlp, MLP), (checks.check_block, TransformerBlock),
    (checks.check_unembed, Unembed), (checks.check_transformer, DemoTransformer),
]
OTHER_CFG = Config(d_model=48, d_vocab=300, n_ctx=20, d_head=8, d_mlp=96, n_heads=6, n_layers=3, layer_norm_eps=1e-6)


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
        return (x - mean) / (var + self.cfg.layer_norm_eps).sqrt() * self.w + self.b


class LNInPlace(LayerNorm):
    def forward(self, x):
        x -= x.mean(-1, keepdim=True)
        return x / (x.var(-1, keepdim=True, unbiased=False) + self.cfg.layer_norm_eps).sqrt() * self.w + self.b


class AttnBroken(Attention):
    """A learner's explicit attention (used for both attention paths), with one mistake."""
    mistake = None

    def attention_pattern(self, x):
        q = einops.einsum(x, self.W_Q, "b p d, h d e -> b p h e") + self.b_Q
        k = einops.einsum(x, self.W_K, "b p d, h d e -> b p h e") + self.b_K
        scores = einops.einsum(q, k, "b q h e, b k h e -> b h q k")
        scores = scores / {"attn_scale_d_head": self.cfg.d_head, "attn_no_scale": 1}.get(self.mistake, math.sqrt(self.cfg.d_head))
        n = x.shape[1]
        diagonal = {"attn_mask_diagonal": 0, "attn_mask_shows_next": 2}.get(self.mistake, 1)
        mask = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=diagonal)
        if self.mistake == "attn_mask_after_softmax":
            return scores.softmax(-1).masked_fill(mask, 0)
        if self.mistake != "attn_no_mask":
            scores = scores.masked_fill(mask, -1e5)
        return scores.softmax(-2 if self.mistake == "attn_softmax_wrong_axis" else -1)

    def forward(self, x):
        v = einops.einsum(x, self.W_V, "b p d, h d e -> b p h e") + self.b_V
        z = einops.einsum(self.attention_pattern(x), v, "b h q k, b k h e -> b q h e")
        out = einops.einsum(z, self.W_O, "b q h e, h e d -> b q d")
        return out if self.mistake == "attn_no_b_O" else out + self.b_O


class MLPBroken(MLP):
    mistake = None

    def forward(self, x):
        pre = x @ self.W_in + (0 if self.mistake == "mlp_no_b_in" else self.b_in)
        post = torch.nn.GELU()(pre) if self.mistake == "mlp_exact_gelu" else F.gelu(pre, approximate="tanh")
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
        return self.W_pos[1:n + 1].expand(tokens.shape[0], -1, -1)  # pos_offset_by_one


class UnembedBroken(Unembed):
    def forward(self, x):
        return x @ self.W_U  # unembed_no_b_U


def _with(base, mistake):
    return type(f"{base.__name__}_{mistake}", (base,), {"mistake": mistake})


def _transformer_with(**parts):
    """A DemoTransformer whose sub-layers are replaced by broken ones, or whose forward skips ln_final."""
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
    **{m: (checks.check_layernorm, _with(LNBroken, m)) for m in ["ln_eps_outside_sqrt", "ln_unbiased_var", "ln_no_mean", "ln_wrong_dim"]},
    **{m: (checks.check_attention, _with(AttnBroken, m)) for m in MISTAKES if m.startswith("attn_")},
    **{m: (checks.check_mlp, _with(MLPBroken, m)) for m in ["mlp_exact_gelu", "mlp_no_b_in"]},
    **{m: (checks.check_block, _with(BlockBroken, m)) for m in ["block_post_ln", "block_no_attn_residual", "block_no_mlp_residual"]},
    "pos_from_tokens": (checks.check_pos_embed, _with(PosBroken, "pos_from_tokens")),
    "pos_offset_by_one": (checks.check_pos_embed, _with(PosBroken, "pos_offset_by_one")),
    "unembed_no_b_U": (checks.check_unembed, UnembedBroken),
    "no_final_ln": (checks.check_transformer, _transformer_with(skip_final_ln=True)),
}


def test_every_mistake_has_a_broken_variant():
    assert set(BROKEN) == set(MISTAKES)


@pytest.mark.parametrize("mistake", sorted(BROKEN))
def test_check_catches_mistake_and_names_it(mistake):
    check, cls = BROKEN[mistake]
    with pytest.raises(AssertionError) as err:
        check(cls)
    assert MISTAKES[mistake] in str(err.value), str(err.value)


@pytest.mark.parametrize("mistake, part", [
    ("pos_from_tokens", dict(pos_embed=_with(PosBroken, "pos_from_tokens"))),
    ("pos_offset_by_one", dict(pos_embed=_with(PosBroken, "pos_offset_by_one"))),
    ("unembed_no_b_U", dict(unembed=UnembedBroken)),
])
def test_whole_model_check_names_a_broken_part(mistake, part):
    with pytest.raises(AssertionError) as err:
        checks.check_transformer(_transformer_with(**part))
    assert MISTAKES[mistake] in str(err.value), str(err.value)


def test_whole_model_check_catches_a_broken_block():
    class Broken(DemoTransformer):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.blocks = torch.nn.ModuleList([_with(BlockBroken, "block_post_ln")(cfg) for _ in range(cfg.n_layers)])

    with pytest.raises(AssertionError, match="post-LayerNorm"):
        checks.check_transformer(Broken)


def test_report_says_where_and_how_big():
    with pytest.raises(AssertionError) as err:
        checks.check_attention(_with(AttnBroken, "attn_mask_shows_next"))
    message = str(err.value)
    assert "max |error|" in message and "first mismatch at (batch=" in message and "posn=" in message


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
