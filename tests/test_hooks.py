"""utils.hooks (notebook 05): hook points with TransformerLens's names and shapes, run_with_cache,
run_with_hooks, the fused and explicit paths; and utils.circuits' helpers."""

import einops
import pytest
import torch
import torch.nn.functional as F

from utils.circuits import (
    ablate_heads,
    direct_logit_attribution,
    head_outputs,
    induction_score,
    per_position_loss,
    previous_token_score,
    repeated_tokens,
    repeating_sequences,
    residual_components,
)
from utils.fused import FusedTransformer
from utils.hook_tools import ActivationCache, act_name
from utils.hooks import HookedDemoTransformer, HookPoint
from utils.model import Config, DemoTransformer, gelu_new, next_token_loss
from utils.sampling import generate

BATCH, POSN = 2, 7
# TransformerLens's hook names per block (HookedTransformer, 3.9.0), in the order a forward pass
# reaches them
BLOCK_HOOKS = [
    "hook_resid_pre",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
]
ATTN_ONLY_BLOCK_HOOKS = [
    n for n in BLOCK_HOOKS if not n.startswith(("ln2.", "mlp.", "hook_mlp_out", "hook_resid_mid"))
]


def small_model(attn_only=False, seed=0, eps=1e-5) -> DemoTransformer:
    """Random weights larger than at initialisation (and LayerNorm weights around 1), so that every
    part matters."""
    cfg = Config(
        d_model=32,
        d_vocab=40,
        n_ctx=16,
        d_head=8,
        d_mlp=64,
        n_heads=4,
        n_layers=2,
        attn_only=attn_only,
        layer_norm_eps=eps,
    )
    torch.manual_seed(seed)
    model = DemoTransformer(cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn(param.shape) * 0.3 + (1.0 if name.endswith(".w") else 0.0))
    return model.eval()


def tokens_for(model, batch=BATCH, posn=POSN, seed=1):
    return torch.randint(
        0, model.cfg.d_vocab, (batch, posn), generator=torch.Generator().manual_seed(seed)
    )


def expected_shapes(cfg, batch, posn):
    d, h, k = cfg.d_model, cfg.n_heads, cfg.d_head
    per_block = {
        "hook_resid_pre": (batch, posn, d),
        "ln1.hook_scale": (batch, posn, 1),
        "ln1.hook_normalized": (batch, posn, d),
        "attn.hook_q": (batch, posn, h, k),
        "attn.hook_k": (batch, posn, h, k),
        "attn.hook_v": (batch, posn, h, k),
        "attn.hook_attn_scores": (batch, h, posn, posn),
        "attn.hook_pattern": (batch, h, posn, posn),
        "attn.hook_z": (batch, posn, h, k),
        "hook_attn_out": (batch, posn, d),
        "hook_resid_mid": (batch, posn, d),
        "ln2.hook_scale": (batch, posn, 1),
        "ln2.hook_normalized": (batch, posn, d),
        "mlp.hook_pre": (batch, posn, cfg.d_mlp),
        "mlp.hook_post": (batch, posn, cfg.d_mlp),
        "hook_mlp_out": (batch, posn, d),
        "hook_resid_post": (batch, posn, d),
    }
    names = ATTN_ONLY_BLOCK_HOOKS if cfg.attn_only else BLOCK_HOOKS
    shapes = {"hook_embed": (batch, posn, d), "hook_pos_embed": (batch, posn, d)}
    for layer in range(cfg.n_layers):
        shapes |= {f"blocks.{layer}.{name}": per_block[name] for name in names}
    return shapes | {
        "ln_final.hook_scale": (batch, posn, 1),
        "ln_final.hook_normalized": (batch, posn, d),
        "unembed.hook_in": (batch, posn, d),
        "unembed.hook_out": (batch, posn, cfg.d_vocab),
    }


@pytest.mark.parametrize("attn_only", [False, True])
def test_hook_names_shapes_and_order_are_transformer_lens(attn_only):
    model = HookedDemoTransformer.from_model(small_model(attn_only))
    expected = expected_shapes(model.cfg, BATCH, POSN)
    assert list(model.hook_points()) == list(expected)  # every name, in forward order
    _, cache = model.run_with_cache(tokens_for(model))
    assert {name: tuple(a.shape) for name, a in cache.items()} == expected
    assert list(cache.keys()) == list(expected)


@pytest.mark.parametrize("attn_only", [False, True])
def test_logits_match_the_explicit_model_with_and_without_hooks(attn_only):
    explicit = small_model(attn_only)
    model = HookedDemoTransformer.from_model(explicit)
    tokens = tokens_for(model)
    expected = explicit(tokens)
    torch.testing.assert_close(model(tokens), expected, atol=1e-5, rtol=1e-5)
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    # the activations are notebook 02's: its pattern, and the stream it computes
    block = explicit.blocks[1]
    torch.testing.assert_close(
        cache["pattern", 1],
        block.attn.attention_pattern(block.ln1(cache["resid_pre", 1])),
        atol=1e-6,
        rtol=1e-5,
    )
    torch.testing.assert_close(
        cache["resid_post", 0], explicit.blocks[0](cache["resid_pre", 0]), atol=1e-5, rtol=1e-5
    )
    # LayerNorm's hooks, as TransformerLens places them: the scale, and the normalised stream before
    # w and b
    ln, x = explicit.blocks[0].ln1, cache["resid_pre", 0]
    torch.testing.assert_close(
        cache["scale", 0, "ln1"],
        (x.var(-1, keepdim=True, unbiased=False) + model.cfg.layer_norm_eps).sqrt(),
    )
    torch.testing.assert_close(
        cache["normalized", 0, "ln1"] * ln.w + ln.b, ln(x), atol=1e-5, rtol=1e-5
    )


def test_gradients_match_the_explicit_model():
    explicit = small_model()
    model = HookedDemoTransformer.from_model(explicit).train()
    tokens = tokens_for(model)
    next_token_loss(explicit(tokens), tokens).backward()
    next_token_loss(model(tokens), tokens).backward()
    for (name, p), q in zip(explicit.named_parameters(), model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_the_fused_path_is_used_unless_the_pattern_or_scale_is_watched(monkeypatch):
    model = HookedDemoTransformer.from_model(small_model())
    tokens = tokens_for(model)
    calls = {"sdpa": 0, "layer_norm": 0}
    sdpa, layer_norm = F.scaled_dot_product_attention, F.layer_norm

    def counting_sdpa(*args, **kwargs):
        calls["sdpa"] += 1
        return sdpa(*args, **kwargs)

    def counting_layer_norm(*args, **kwargs):
        calls["layer_norm"] += 1
        return layer_norm(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    monkeypatch.setattr(F, "layer_norm", counting_layer_norm)
    model(tokens)
    assert calls == {
        "sdpa": 2,
        "layer_norm": 5,
    }  # 2 attention layers; 2 LayerNorms per block and ln_final
    model.run_with_cache(
        tokens,
        names_filter=lambda name: name.endswith(
            ("hook_z", "hook_q", "hook_resid_post", "mlp.hook_post")
        ),
    )
    assert calls == {
        "sdpa": 4,
        "layer_norm": 10,
    }  # reading q, z, the stream and the MLP keeps the fused kernels
    model.run_with_cache(tokens, names_filter=[("pattern", 1), "ln_final.hook_scale"])
    assert calls == {
        "sdpa": 5,
        "layer_norm": 14,
    }  # layer 1's attention and ln_final go explicit, the rest stays fused
    model.run_with_cache(tokens, names_filter=[("attn_scores", 0), ("normalized", 1, "ln2")])
    assert calls == {"sdpa": 6, "layer_norm": 18}


def test_a_hook_may_replace_an_activation_and_is_removed_afterwards():
    explicit = small_model()
    model = HookedDemoTransformer.from_model(explicit)
    tokens = tokens_for(model)
    seen = []

    def zero_pos_embed(activation, hook):
        seen.append(hook.name)
        return torch.zeros_like(activation)

    ablated = model.run_with_hooks(tokens, fwd_hooks=[("hook_pos_embed", zero_pos_embed)])
    assert seen == ["hook_pos_embed"]
    with torch.no_grad():
        explicit.pos_embed.W_pos.zero_()
    torch.testing.assert_close(ablated, explicit(tokens), atol=1e-5, rtol=1e-5)
    assert not any(point.active for point in model.hook_points().values())
    torch.testing.assert_close(
        model(tokens), HookedDemoTransformer.from_model(small_model())(tokens)
    )


def test_hooks_are_removed_when_a_hook_raises():
    model = HookedDemoTransformer.from_model(small_model())

    def broken(activation, hook):
        raise RuntimeError("my hook failed")

    with pytest.raises(RuntimeError, match="my hook failed"):
        model.run_with_hooks(
            tokens_for(model),
            [("blocks.0.hook_resid_pre", lambda a, hook: None), (("z", 1), broken)],
        )
    assert not any(point.hooks for point in model.hook_points().values())


def test_a_hook_that_returns_something_wrong_gets_a_clear_error():
    model = HookedDemoTransformer.from_model(small_model())
    tokens = tokens_for(model)
    with pytest.raises(
        ValueError,
        match=r"returned shape \(2, 4, 7\); "
        r"a replacement must have the activation's shape \(2, 4, 7, 7\)",
    ):
        model.run_with_hooks(tokens, [(("pattern", 0), lambda p, hook: p[:, :, 0])])
    with pytest.raises(TypeError, match=r"returned a float; a hook returns None"):
        model.run_with_hooks(tokens, [("hook_embed", lambda e, hook: 0.0)])
    assert not any(point.hooks for point in model.hook_points().values())


@pytest.mark.parametrize(
    "names, message",
    [
        (
            "blocks.0.attn.hook_patern",
            r"not a hook point of this model; did you mean 'blocks.0.attn.hook_pattern'",
        ),
        (("pattern", 2), r"layer must be an int from -2 to 1 \(this model has 2 blocks\)"),
        ("resid_post", r"'resid_post' is in every block: give the layer too"),
        ("scale_ln1", r"not a hook name"),
        (("scale", 0), r"needs layer_type 'ln1' or 'ln2'"),
        (("nonsense", 0), r"'nonsense' is not a hook name; short names are"),
        (42, r"names must be None, a hook name"),
        (lambda name: False, r"matches no hook point"),
    ],
)
def test_bad_names_get_clear_errors(names, message):
    model = HookedDemoTransformer.from_model(small_model())
    with pytest.raises((KeyError, ValueError, TypeError), match=message):
        # a valid pair first: it must not stay attached when the next one is refused
        model.run_with_hooks(
            tokens_for(model), [("hook_embed", lambda a, hook: None), (names, lambda a, hook: None)]
        )
    assert not any(point.hooks for point in model.hook_points().values())


def test_mlp_names_on_an_attention_only_model_say_why():
    model = HookedDemoTransformer.from_model(small_model(attn_only=True))
    with pytest.raises(ValueError, match="attention-only"):
        model.run_with_cache(tokens_for(model), names_filter=["blocks.0.hook_mlp_out"])


@pytest.mark.parametrize(
    "fwd_hooks, message",
    [
        ("hook_embed", r"fwd_hooks must be a list of \(name, hook_fn\) pairs"),
        ([("hook_embed",)], r"each entry of fwd_hooks must be a \(name, hook_fn\) pair"),
        (
            [("hook_embed", "not a function")],
            r"each entry of fwd_hooks must be a \(name, hook_fn\) pair",
        ),
    ],
)
def test_bad_fwd_hooks_get_clear_errors(fwd_hooks, message):
    model = HookedDemoTransformer.from_model(small_model())
    with pytest.raises(TypeError, match=message):
        model.run_with_hooks(tokens_for(model), fwd_hooks)


def test_the_cache_takes_transformer_lens_short_names():
    model = HookedDemoTransformer.from_model(small_model())
    _, cache = model.run_with_cache(tokens_for(model))
    assert cache["pattern", 0] is cache["blocks.0.attn.hook_pattern"]
    assert cache["attn", 1] is cache["blocks.1.attn.hook_pattern"]  # TransformerLens's alias
    assert cache["resid_post", -1] is cache["blocks.1.hook_resid_post"]
    assert (
        cache["scale"] is cache["ln_final.hook_scale"]
        and cache["normalized"] is cache["ln_final.hook_normalized"]
    )
    assert cache["scale", 1, "ln2"] is cache["blocks.1.ln2.hook_scale"]
    assert (
        cache["embed"] is cache["hook_embed"] and cache["pre", 0] is cache["blocks.0.mlp.hook_pre"]
    )
    assert ("z", 1) in cache and ("z", 5) not in cache and "nonsense" not in cache
    assert ("z", True) not in cache and (
        "z",
        1.0,
    ) not in cache  # a bool or a float is not a layer (True would be layer 1)
    assert (
        act_name("q", 3) == "blocks.3.attn.hook_q"
        and act_name("mlp_out", 0) == "blocks.0.hook_mlp_out"
    )
    assert len(cache) == len(model.hook_points()) and "ActivationCache with" in repr(cache)


def test_names_filter_records_only_what_it_selects():
    model = HookedDemoTransformer.from_model(small_model())
    tokens = tokens_for(model)
    assert list(model.run_with_cache(tokens, names_filter="hook_embed")[1].keys()) == ["hook_embed"]
    assert list(
        model.run_with_cache(tokens, names_filter=[("q", 1), "blocks.0.hook_resid_post"])[1].keys()
    ) == ["blocks.0.hook_resid_post", "blocks.1.attn.hook_q"]  # recorded in forward order
    only_patterns = model.run_with_cache(
        tokens, names_filter=lambda name: name.endswith("hook_pattern")
    )[1]
    assert list(only_patterns.keys()) == [
        "blocks.0.attn.hook_pattern",
        "blocks.1.attn.hook_pattern",
    ]
    with pytest.raises(KeyError, match="was not recorded: the names_filter"):
        only_patterns["z", 0]


def test_cached_activations_are_detached():
    model = HookedDemoTransformer.from_model(small_model()).train()
    logits, cache = model.run_with_cache(tokens_for(model))
    assert logits.requires_grad and not any(a.requires_grad for a in cache.values())


def test_an_unwatched_hook_point_is_the_identity_and_pytorch_hooks_work_too():
    point = HookPoint()
    x = torch.randn(3)
    assert point(x) is x and not point.active
    handle = point.register_forward_hook(lambda module, inputs, output: output * 2)
    assert point.active
    torch.testing.assert_close(point(x), x * 2)
    handle.remove()
    assert point(x) is x


def test_from_model_copies_weights_device_and_mode_and_refuses_other_things():
    explicit = small_model().train()
    model = HookedDemoTransformer.from_model(explicit)
    assert model.training and all(
        torch.equal(a, b)
        for a, b in zip(explicit.state_dict().values(), model.state_dict().values())
    )
    assert HookedDemoTransformer.from_model(FusedTransformer(explicit.cfg)).cfg == explicit.cfg
    assert not HookedDemoTransformer.from_model(
        small_model()
    ).training  # an eval-mode model stays in eval mode
    with pytest.raises(TypeError, match="model must be a DemoTransformer"):
        HookedDemoTransformer.from_model(explicit.state_dict())


def test_generation_with_a_kv_cache_is_unchanged():
    explicit = small_model()
    model = HookedDemoTransformer.from_model(explicit)
    prompt = tokens_for(model, batch=1, posn=3)
    expected = generate(explicit, prompt, 10, temperature=0, use_cache=False)
    assert torch.equal(generate(model, prompt, 10, temperature=0, use_cache=True), expected)
    assert torch.equal(generate(model, prompt, 10, temperature=0, use_cache=False), expected)


@pytest.mark.parametrize("attn_only", [False, True])
def test_the_residual_stream_is_the_sum_of_its_components(attn_only):
    model = HookedDemoTransformer.from_model(small_model(attn_only))
    _, cache = model.run_with_cache(tokens_for(model))
    labels, components = residual_components(cache)
    assert labels == ["embed", "pos_embed"] + [
        f"{part} {layer}"
        for layer in range(2)
        for part in (("attn",) if attn_only else ("attn", "mlp"))
    ]
    torch.testing.assert_close(components.sum(0), cache["resid_post", -1], atol=1e-5, rtol=1e-5)
    for layer in range(2):
        heads = head_outputs(cache, layer)  # [batch, posn, n_heads, d_model]
        torch.testing.assert_close(
            heads.sum(2) + model.blocks[layer].attn.b_O,
            cache["attn_out", layer],
            atol=1e-5,
            rtol=1e-5,
        )


def test_repeating_sequences_repeat_with_their_period():
    rows = repeating_sequences(50, 30, 20, 3, 7, seed=0)
    assert rows.shape == (50, 30) and (rows[:, 0] == 19).all() and (rows[:, 1:] < 19).all()
    shortest = set()
    for row in rows[:, 1:]:
        periods = [p for p in range(3, 8) if torch.equal(row[p:], row[:-p])]
        assert periods, row
        shortest.add(periods[0])
    assert shortest == {3, 4, 5, 6, 7}  # the period is drawn per row, from the whole range
    assert torch.equal(rows, repeating_sequences(50, 30, 20, 3, 7, seed=0))


def test_repeated_tokens_and_scores():
    tokens = repeated_tokens(3, 5, 20, seed=0)
    assert (
        tokens.shape == (3, 11)
        and (tokens[:, 0] == 19).all()
        and torch.equal(tokens[:, 1:6], tokens[:, 6:])
    )
    pattern = (
        torch.eye(11).roll(-1, dims=1).tril()[None, None].repeat(2, 3, 1, 1)
    )  # every query on the previous key
    pattern[:, :, 0, 0] = 1
    torch.testing.assert_close(previous_token_score(pattern), torch.ones(3))


def test_per_position_loss_is_cross_entropy_per_position():
    logits, tokens = torch.randn(2, 6, 10), torch.randint(0, 10, (2, 6))
    expected = F.cross_entropy(
        logits[:, :-1].reshape(-1, 10), tokens[:, 1:].reshape(-1), reduction="none"
    ).view(2, 5)
    torch.testing.assert_close(per_position_loss(logits, tokens), expected)
    torch.testing.assert_close(
        per_position_loss(logits, tokens).mean(), next_token_loss(logits, tokens)
    )


def test_activation_cache_needs_a_model_with_a_config():
    assert isinstance(
        ActivationCache({}, HookedDemoTransformer(small_model().cfg)), ActivationCache
    )


def test_each_activation_is_what_its_name_says():
    """Each hook point records what TransformerLens's does, computed here from notebook 02's model:
    a hook placed after the wrong operation (the scale before its sqrt, the scores before the mask
    or the scaling, pre after the GELU) is caught. A large layer_norm_eps, so that a scale without
    it differs."""
    explicit = small_model(eps=0.1)
    model = HookedDemoTransformer.from_model(explicit)
    tokens = tokens_for(model)
    logits, cache = model.run_with_cache(tokens)
    close = dict(atol=1e-5, rtol=1e-5)

    def layer_norm_scale(x):
        return (x.var(dim=-1, keepdim=True, unbiased=False) + 0.1).sqrt()

    torch.testing.assert_close(cache["embed"], explicit.embed(tokens))
    torch.testing.assert_close(cache["pos_embed"], explicit.pos_embed(tokens))
    for layer, block in enumerate(explicit.blocks):
        resid_pre, resid_mid = cache["resid_pre", layer], cache["resid_mid", layer]
        for which, ln, x in (("ln1", block.ln1, resid_pre), ("ln2", block.ln2, resid_mid)):
            torch.testing.assert_close(cache["scale", layer, which], layer_norm_scale(x), **close)
            centred = x - x.mean(
                dim=-1, keepdim=True
            )  # hook_normalized is before w and b, as in TransformerLens
            torch.testing.assert_close(
                cache["normalized", layer, which], centred / layer_norm_scale(x), **close
            )
            torch.testing.assert_close(
                cache["normalized", layer, which] * ln.w + ln.b, ln(x), **close
            )
        x, attn = block.ln1(resid_pre), block.attn
        for name, W, b in (
            ("q", attn.W_Q, attn.b_Q),
            ("k", attn.W_K, attn.b_K),
            ("v", attn.W_V, attn.b_V),
        ):
            expected = (
                einops.einsum(
                    x, W, "batch posn d_model, n_heads d_model d_head -> batch posn n_heads d_head"
                )
                + b
            )
            torch.testing.assert_close(cache[name, layer], expected, **close)
        scores = einops.einsum(
            cache["q", layer],
            cache["k", layer],
            "batch q n_heads d_head, batch k n_heads d_head -> batch n_heads q k",
        )
        torch.testing.assert_close(
            cache["attn_scores", layer], attn.apply_causal_mask(scores / 8**0.5), **close
        )  # d_head 8
        torch.testing.assert_close(
            cache["pattern", layer], cache["attn_scores", layer].softmax(-1), **close
        )
        z = einops.einsum(
            cache["pattern", layer],
            cache["v", layer],
            "batch n_heads q k, batch k n_heads d_head -> batch q n_heads d_head",
        )
        torch.testing.assert_close(cache["z", layer], z, **close)
        torch.testing.assert_close(cache["attn_out", layer], attn(x), **close)
        torch.testing.assert_close(resid_mid, resid_pre + cache["attn_out", layer], **close)
        pre = block.ln2(resid_mid) @ block.mlp.W_in + block.mlp.b_in
        torch.testing.assert_close(cache["pre", layer], pre, **close)
        torch.testing.assert_close(cache["post", layer], gelu_new(pre), **close)
        torch.testing.assert_close(
            cache["mlp_out", layer], block.mlp(block.ln2(resid_mid)), **close
        )
        torch.testing.assert_close(
            cache["resid_post", layer], resid_mid + cache["mlp_out", layer], **close
        )
    torch.testing.assert_close(cache["scale"], layer_norm_scale(cache["resid_post", -1]), **close)
    torch.testing.assert_close(
        cache["normalized"] * explicit.ln_final.w + explicit.ln_final.b,
        explicit.ln_final(cache["resid_post", -1]),
        **close,
    )
    torch.testing.assert_close(
        cache["unembed.hook_in"], explicit.ln_final(cache["resid_post", -1]), **close
    )
    torch.testing.assert_close(cache["unembed.hook_out"], logits)


def test_nested_hooks_remove_only_their_own():
    """A with-block's hooks stay attached while run_with_hooks and run_with_cache inside it add and
    remove theirs, at the same hook point too; and they go when the block ends."""
    model = HookedDemoTransformer.from_model(small_model())
    tokens = tokens_for(model)
    outer = []

    def count(activation, hook):
        outer.append(hook.name)

    with model.hooks([("hook_embed", count)]):
        model.run_with_hooks(
            tokens, [("hook_embed", lambda a, hook: None), (("z", 0), lambda a, hook: None)]
        )
        model.run_with_cache(tokens, names_filter="hook_embed")
        assert model.hook_points()["hook_embed"].hooks == [count]
        model(tokens)
    assert outer == ["hook_embed"] * 3 and not any(
        point.hooks for point in model.hook_points().values()
    )


def test_reset_hooks_removes_every_hook():
    model = HookedDemoTransformer.from_model(small_model())
    model.hook_points()["blocks.1.attn.hook_z"].hooks.append(
        lambda z, hook: z * 0
    )  # attached by hand: no with-block removes it
    model.hook_points()["hook_embed"].hooks.append(lambda e, hook: None)
    model.reset_hooks()
    assert not any(point.active for point in model.hook_points().values())
    torch.testing.assert_close(
        model(tokens_for(model)), HookedDemoTransformer.from_model(small_model())(tokens_for(model))
    )


def test_add_hook_stays_until_reset_hooks():
    """TransformerLens's add_hook: attached to every point a name or filter selects, for every run
    until reset_hooks; a typo is an error naming the closest names, not a hook attached nowhere."""
    model = HookedDemoTransformer.from_model(small_model())
    tokens = tokens_for(model)
    seen = []
    model.add_hook(lambda name: name.endswith("hook_z"), lambda z, hook: seen.append(hook.name))
    model.add_hook(("pattern", 0), lambda pattern, hook: seen.append(hook.name))
    model(tokens)
    model(tokens)
    layers = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
    once = ["blocks.0.attn.hook_pattern", *layers]
    assert sorted(seen) == sorted(once * 2)
    model.reset_hooks()
    model(tokens)
    assert len(seen) == 2 * len(once)
    with pytest.raises(ValueError, match="hook_patern.*blocks.0.attn.hook_pattern"):
        model.add_hook("blocks.0.attn.hook_patern", lambda a, hook: None)
    with pytest.raises(TypeError, match="cannot be called as fn"):
        model.add_hook("hook_embed", lambda activation: None)
    assert not any(point.hooks for point in model.hook_points().values())


def test_one_pair_without_a_list_is_accepted():
    model = HookedDemoTransformer.from_model(small_model())
    seen = []
    model.run_with_hooks(tokens_for(model), ("hook_embed", lambda a, hook: seen.append(hook.name)))
    assert seen == ["hook_embed"]


@pytest.mark.parametrize(
    "tokens, error, message",
    [
        (torch.zeros(2, 5), TypeError, r"tokens must be token ids of dtype torch.int64"),
        (
            torch.zeros(5, dtype=torch.long),
            ValueError,
            r"tokens must have shape \[batch, posn\].*tokens\[None\]",
        ),
        (torch.zeros(1, 17, dtype=torch.long), ValueError, r"17 positions, more than n_ctx = 16"),
        (torch.full((1, 3), 40), ValueError, r"ids in \[0, 40\)"),
        ([[1, 2, 3]], TypeError, r"tokens must be a torch.Tensor"),
    ],
)
def test_bad_tokens_get_clear_errors_and_leave_no_hooks(tokens, error, message):
    model = HookedDemoTransformer.from_model(small_model())
    for run in (
        lambda: model(tokens),
        lambda: model.run_with_cache(tokens),
        lambda: model.run_with_hooks(tokens, [("hook_embed", lambda a, hook: None)]),
    ):
        with pytest.raises(error, match=message):
            run()
    assert not any(point.hooks for point in model.hook_points().values())


# -------------------------------------------------- bad input, as a learner new to PyTorch gives it


def no_hooks_left(model) -> bool:
    return not any(point.active for point in model.hook_points().values())


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"d_model": 32}, r"cfg must be a utils.model.Config.*got dict"),
        (Config, r"got the class Config \(call it: Config\(...\)\)"),
        (None, r"cfg must be a utils.model.Config"),
    ],
)
def test_a_bad_config_gets_a_clear_error(cfg, message):
    with pytest.raises(TypeError, match=message):
        HookedDemoTransformer(cfg)
    with pytest.raises(
        TypeError, match=r"a model you have, use HookedDemoTransformer.from_model\(model\)"
    ):
        HookedDemoTransformer(small_model())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_from_model_keeps_the_dtype(dtype):
    explicit = small_model().to(dtype)
    model = HookedDemoTransformer.from_model(explicit)
    assert all(p.dtype == dtype for p in model.parameters())
    assert all(
        torch.equal(a, b)
        for a, b in zip(explicit.state_dict().values(), model.state_dict().values())
    )


@pytest.mark.parametrize(
    "returns, message",
    [
        (
            lambda a: a.double(),
            r"returned a torch.float64 tensor on cpu; "
            r"a replacement must have the activation's dtype and device, "
            r"torch.float32 on cpu: return result.to\(activation\)",
        ),
        (
            lambda a: a.long(),
            r"returned a torch.int64 tensor",
        ),  # else embed + pos_embed would silently round the activation
        (
            lambda a: a.to("meta"),
            r"tensor on meta; a replacement must have the activation's dtype and device",
        ),
    ],
)
def test_a_replacement_of_another_dtype_or_device_gets_a_clear_error(returns, message):
    model = HookedDemoTransformer.from_model(small_model())
    for name in ("hook_embed", ("pattern", 0)):
        with pytest.raises(TypeError, match=message):
            model.run_with_hooks(tokens_for(model), [(name, lambda a, hook: returns(a))])
    assert no_hooks_left(model)


@pytest.mark.parametrize(
    "hook_fn, message",
    [
        (
            lambda a: None,
            r"the hook function <lambda>\(a\) cannot be called "
            r"as fn\(activation, hook=hook_point\)",
        ),
        (
            lambda a, h: None,
            r"<lambda>\(a, h\) cannot be called"
            r".*the second named hook, e.g. lambda activation, hook: ...",
        ),
        (lambda a, b, c: None, r"<lambda>\(a, b, c\) cannot be called"),
        (
            torch.nn.Identity,
            r"a hook function is a function fn\(activation, hook\), got the class Identity",
        ),
    ],
)
def test_a_hook_function_with_the_wrong_parameters_gets_a_clear_error(hook_fn, message):
    model = HookedDemoTransformer.from_model(small_model())
    with pytest.raises(TypeError, match=message):
        model.run_with_hooks(tokens_for(model), [("hook_embed", hook_fn)])
    assert no_hooks_left(model)
    model.run_with_hooks(
        tokens_for(model), [("hook_embed", lambda activation, hook, scale=2: None)]
    )  # extra defaults are fine


@pytest.mark.parametrize(
    "inner",
    [
        lambda model, tokens: model(tokens),
        lambda model, tokens: model.run_with_hooks(
            tokens, [("blocks.1.hook_resid_pre", lambda a, hook: None)]
        ),
        lambda model, tokens: model.run_with_cache(tokens),
    ],
)
def test_a_hook_that_runs_the_model_gets_a_clear_error_not_a_recursion_error(inner):
    model = HookedDemoTransformer.from_model(small_model())
    tokens = tokens_for(model)
    with pytest.raises(
        RuntimeError, match=r"a hook on 'blocks.0.hook_resid_pre' ran the model .* without end"
    ):
        model.run_with_hooks(
            tokens, [("blocks.0.hook_resid_pre", lambda a, hook: inner(model, tokens))]
        )
    assert no_hooks_left(model)
    model.run_with_hooks(
        tokens, [("blocks.0.hook_resid_pre", lambda a, hook: None)]
    )  # and the point works afterwards


def test_an_in_place_hook_on_pos_embed_leaves_w_pos_alone():
    """hook_pos_embed's activation is W_pos broadcast over the batch: a hook changing it in place (a
    common way to ablate) must change a copy, not the learner's weights."""
    model = HookedDemoTransformer.from_model(small_model())
    w_pos = model.pos_embed.W_pos.detach().clone()
    for batch in (1, 2):
        with torch.no_grad():
            ablated = model.run_with_hooks(
                tokens_for(model, batch=batch), [("hook_pos_embed", lambda a, hook: a.zero_())]
            )
            _, cache = model.run_with_cache(
                tokens_for(model, batch=batch), names_filter="hook_pos_embed"
            )
            cache["pos_embed"].mul_(2)  # the cached copy is the learner's to change, too
        assert torch.equal(model.pos_embed.W_pos, w_pos)
        explicit = small_model()
        with torch.no_grad():
            explicit.pos_embed.W_pos.zero_()
            torch.testing.assert_close(
                ablated, explicit(tokens_for(model, batch=batch)), atol=1e-5, rtol=1e-5
            )


@pytest.mark.parametrize(
    "names_filter, error, message",
    [
        ([], ValueError, r"names_filter=\[\] selects no hook point of this model"),
        (
            lambda name: None,
            ValueError,
            r"selects no hook point",
        ),  # a filter function without `return`
        (
            ["pattern", 0],
            TypeError,
            r"mix names and numbers: "
            r"for a short name with its layer give a tuple, e.g. \('pattern', 0\)",
        ),
        ([0, 1], TypeError, r"a hook name is a str"),
    ],
)
def test_names_filters_that_select_nothing_or_mix_types_get_clear_errors(
    names_filter, error, message
):
    model = HookedDemoTransformer.from_model(small_model())
    with pytest.raises(error, match=message):
        model.run_with_cache(tokens_for(model), names_filter=names_filter)
    assert no_hooks_left(model)


def test_names_filter_may_be_a_set_a_generator_or_a_tuple_of_short_names():
    model = HookedDemoTransformer.from_model(small_model())
    tokens = tokens_for(model)
    for names_filter in (
        {"hook_embed", "blocks.0.hook_resid_pre"},
        (n for n in ["blocks.0.hook_resid_pre", "hook_embed"]),
        [("embed",), ("resid_pre", 0)],
    ):
        assert list(model.run_with_cache(tokens, names_filter=names_filter)[1].keys()) == [
            "hook_embed",
            "blocks.0.hook_resid_pre",
        ]


@pytest.mark.parametrize(
    "fwd_hooks",
    [
        {"hook_embed": lambda a, hook: None},
        lambda a, hook: None,
        None,
        (pair for pair in [("hook_embed", lambda a, hook: None)]),
    ],
)
def test_fwd_hooks_that_are_not_a_list_get_a_clear_error(fwd_hooks):
    model = HookedDemoTransformer.from_model(small_model())
    with pytest.raises(
        TypeError, match=r"fwd_hooks must be a list of \(name, hook_fn\) pairs, got"
    ):
        model.run_with_hooks(tokens_for(model), fwd_hooks)


@pytest.mark.parametrize(
    "key, message",
    [
        (("pattern", "0"), r"layer must be an int from -2 to 1 .*got '0'"),
        (("pattern", 0.0), r"layer must be an int from -2 to 1 .*got 0.0"),
        (("pattern", True), r"layer must be an int from -2 to 1 .*got True"),
        ((), r"a cache key is a name, \(name, layer\) or \(name, layer, layer_type\)"),
        (("pattern", 0, "ln1"), r"layer_type is for scale and normalized .*'pattern' has none"),
        (("scale", None, "ln1"), r"layer_type 'ln1' needs a layer too"),
        (("embed", 0), r"'embed' is not in a block: give it without a layer"),
        (["pattern", 0], r"for a short name with its layer give a tuple, e.g. \('pattern', 0\)"),
    ],
)
def test_bad_cache_keys_get_clear_errors(key, message):
    model = HookedDemoTransformer.from_model(small_model())
    _, cache = model.run_with_cache(tokens_for(model))
    with pytest.raises((KeyError, TypeError), match=message):
        cache[key]
    assert key not in cache if not isinstance(key, list) else True


def test_numpy_and_tensor_layers_are_accepted():
    np = pytest.importorskip("numpy")
    model = HookedDemoTransformer.from_model(small_model())
    _, cache = model.run_with_cache(tokens_for(model))
    assert (
        cache["pattern", np.int64(1)]
        is cache["pattern", torch.tensor(1)]
        is cache["blocks.1.attn.hook_pattern"]
    )
    assert (
        act_name("pattern", 0, "attn") == "blocks.0.attn.hook_pattern"
    )  # TransformerLens's own layer_type is fine


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: act_name("pattern", -1),
            KeyError,
            r"act_name does not resolve a negative layer; cache\[name, -1\] does",
        ),
        (lambda: act_name("pattern", 1.5), KeyError, r"layer must be an int from 0"),
        (lambda: act_name("pattern", "0"), KeyError, r"layer must be an int from 0"),
        (
            lambda: ActivationCache([], HookedDemoTransformer(small_model().cfg)),
            TypeError,
            r"activations must be a dict",
        ),
        (lambda: ActivationCache({}, None), TypeError, r"model must be the HookedDemoTransformer"),
    ],
)
def test_bad_act_name_and_activation_cache_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def circuits_inputs():
    model = HookedDemoTransformer.from_model(small_model())
    _, cache = model.run_with_cache(tokens_for(model))
    return model, cache


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda m, c: residual_components({"embed": 1}),
            TypeError,
            r"cache must be the ActivationCache from `logits, cache = model.run_with_cache",
        ),
        (
            lambda m, c: head_outputs(m, 0),
            TypeError,
            r"cache must be the ActivationCache.*got HookedDemoTransformer",
        ),
        (
            lambda m, c: head_outputs(c, 2),
            ValueError,
            r"layer must be an int from -2 to 1 \(the model has 2 blocks\), got 2",
        ),
        (lambda m, c: head_outputs(c, "0"), ValueError, r"layer must be an int"),
        (
            lambda m, c: direct_logit_attribution(torch.randn(3, 31), torch.tensor([1.0]), m, 3),
            ValueError,
            r"vectors must be residual-stream vectors \[..., d_model=32\], got \(3, 31\)",
        ),
        (
            lambda m, c: direct_logit_attribution(torch.randn(3, 32), torch.tensor([1.0]), m, 40),
            ValueError,
            r"token must be one token id, an int in \[0, 40\)",
        ),
        (
            lambda m, c: direct_logit_attribution(
                torch.randn(3, 32), torch.tensor([1.0]), m, "the"
            ),
            ValueError,
            r"token must be one token id",
        ),
        (
            lambda m, c: direct_logit_attribution(torch.randn(3, 32), c["scale"], m, 3),
            ValueError,
            r"scale must be ln_final's scale where the vectors were read",
        ),
        (
            lambda m, c: direct_logit_attribution(torch.randn(3, 32), torch.tensor([1.0]), c, 3),
            TypeError,
            r"model must be your model",
        ),
        (
            lambda m, c: induction_score(c["pattern", 0], 5),
            ValueError,
            r"pattern has 7 positions but seq_len=5 means BOS and the tokens twice: "
            r"2 \* 5 \+ 1 = 11",
        ),
        (
            lambda m, c: induction_score(c["pattern", 0], 0),
            ValueError,
            r"seq_len must be a positive int",
        ),
        (
            lambda m, c: induction_score(c["pattern", 0][0], 3),
            ValueError,
            r"pattern must be attention patterns \[batch, n_heads, query_posn, key_posn\]"
            r".*pattern\[None\]",
        ),
        (
            lambda m, c: induction_score(c, 3),
            ValueError,
            r"pattern must be attention patterns.*got ActivationCache",
        ),
        (
            lambda m, c: previous_token_score(c["pattern", 0][0]),
            ValueError,
            r"pattern must be attention patterns",
        ),
        (
            lambda m, c: ablate_heads(m, tokens_for(m), (0, 1)),
            ValueError,
            r"heads must be a list of \(layer, head\) pairs.*got \(0, 1\)",
        ),
        (
            lambda m, c: ablate_heads(m, tokens_for(m), [(0, 4)]),
            ValueError,
            r"head in \[0, 4\).*got \[\(0, 4\)\]",
        ),
        (lambda m, c: ablate_heads(m, tokens_for(m), [(2, 0)]), ValueError, r"layer in \[0, 2\)"),
        (
            lambda m, c: ablate_heads(small_model(), tokens_for(m), [(0, 1)]),
            TypeError,
            r"model must be a HookedDemoTransformer.*from_model",
        ),
        (lambda m, c: repeated_tokens(2, 5, 1), ValueError, r"d_vocab must be at least 2"),
        (
            lambda m, c: repeated_tokens(2, 5.0, 40),
            TypeError,
            r"seq_len must be a positive int, got 5.0",
        ),
        (
            lambda m, c: repeating_sequences(2, 10, 40, 5, 3, seed=0),
            ValueError,
            r"min_period <= max_period",
        ),
        (
            lambda m, c: repeating_sequences(2, 10, 40, 0, 3, seed=0),
            ValueError,
            r"min_period must be a positive int",
        ),
        (
            lambda m, c: per_position_loss(tokens_for(m), torch.randn(2, 7, 40)),
            ValueError,
            r"logits must be a float tensor .*the order is logits, tokens",
        ),
        (
            lambda m, c: per_position_loss(torch.randn(2, 5, 40), tokens_for(m)),
            ValueError,
            r"tokens must be the integer token ids .*\(2, 5\) here",
        ),
    ],
    ids=lambda x: "",
)
def test_circuits_functions_give_clear_errors_for_bad_input(call, error, message):
    model, cache = circuits_inputs()
    with pytest.raises(error, match=message):
        call(model, cache)
    assert no_hooks_left(model)


def test_circuits_functions_take_what_the_notebook_gives_them():
    model, cache = circuits_inputs()
    vectors = torch.randn(3, 4, 32)
    assert direct_logit_attribution(vectors, torch.tensor([1.3]), model, 3).shape == (3, 4)
    assert direct_logit_attribution(vectors, 1.3, model, torch.tensor(3)).shape == (
        3,
        4,
    )  # a float scale; a 0-d tensor id
    assert direct_logit_attribution(cache["resid_post", -1], cache["scale"], model, 3).shape == (
        2,
        7,
    )  # a scale per position
    assert head_outputs(cache, -1).shape == (2, 7, 4, 32)
    torch.testing.assert_close(
        ablate_heads(model, tokens_for(model), []), model(tokens_for(model))
    )  # nothing to ablate
