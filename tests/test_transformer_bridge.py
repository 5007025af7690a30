"""utils.transformer_lens_handoff's TransformerLens 4.x converters: to_transformer_bridge and
from_transformer_bridge. TransformerLens 4.x is optional (pip install "transformer-lens>=4"):
without it this whole file is skipped (tests/handoff_envs.sh runs it in an environment with it)."""

import dataclasses

import pytest
import torch

transformer_lens = pytest.importorskip("transformer_lens")
if not hasattr(transformer_lens, "TransformerBridge"):
    pytest.skip("TransformerLens 3.x: no TransformerBridge", allow_module_level=True)

from utils.hooks import HookedDemoTransformer  # noqa: E402 (after the skip)
from utils.model import Config, DemoTransformer  # noqa: E402
from utils.transformer_lens_handoff import (  # noqa: E402
    from_transformer_bridge,
    to_transformer_bridge,
)

CFG = Config(d_model=64, n_heads=4, d_head=16, d_mlp=256, n_layers=2, n_ctx=32, d_vocab=100)
TOKENS = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))


def _model(attn_only=False, model_class=HookedDemoTransformer):
    torch.manual_seed(0)
    model = model_class(dataclasses.replace(CFG, attn_only=attn_only)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.unembed.b_U.zero_()
    return model


@pytest.mark.parametrize("attn_only", [False, True])
def test_the_bridge_gives_our_logits_and_activations(attn_only):
    model = _model(attn_only)
    bridge = to_transformer_bridge(model)
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(TOKENS)
        ours_logits, ours = model.run_with_cache(TOKENS)
    torch.testing.assert_close(logits, ours_logits, atol=2e-6, rtol=1e-5)
    shared = set(ours.keys()) & set(cache.keys())
    assert shared == set(ours.keys())  # every hook name of ours is one of the bridge's
    for name in shared:
        theirs, mine = cache[name], ours[name]
        if name.endswith("hook_attn_scores"):  # masked: -inf in ours, float32's lowest in theirs
            masked = mine == float("-inf")
            assert masked.any() and (theirs[masked] <= torch.finfo(theirs.dtype).min / 2).all()
            theirs, mine = theirs[~masked], mine[~masked]
        torch.testing.assert_close(theirs, mine, atol=2e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("attn_only", [False, True])
def test_and_back(attn_only):
    model = _model(attn_only)
    bridge = to_transformer_bridge(model)
    bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
    back = from_transformer_bridge(bridge, DemoTransformer)
    assert type(back) is DemoTransformer and back.cfg == model.cfg
    for (name, ours), theirs in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(ours, theirs), name


def test_processed_weights_are_refused_not_converted_wrong():
    bridge = to_transformer_bridge(_model())
    bridge.enable_compatibility_mode(disable_warnings=True)  # folds LayerNorms, centres weights
    with pytest.raises(ValueError, match="no_processing=True"):
        from_transformer_bridge(bridge)


def test_b_U_must_be_dropped_by_name():
    model = _model()
    with torch.no_grad():
        model.unembed.b_U.fill_(0.3)
    with pytest.raises(ValueError, match="drop_unembed_bias=True"):
        to_transformer_bridge(model)
    bridge = to_transformer_bridge(model, drop_unembed_bias=True)
    with torch.no_grad():
        torch.testing.assert_close(bridge(TOKENS) + 0.3, model(TOKENS), atol=2e-6, rtol=1e-5)


def test_bad_arguments_get_one_clear_error():
    with pytest.raises(TypeError, match="bridge must be a transformer_lens.TransformerBridge"):
        from_transformer_bridge(_model())
    with pytest.raises(TypeError, match="model must be a DemoTransformer"):
        to_transformer_bridge(torch.nn.Linear(2, 2))
