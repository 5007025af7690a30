"""utils.transformer_lens_handoff: the converters to and from TransformerLens's HookedTransformer.

TransformerLens is optional (pip install "transformer-lens==3.9.0"): without it, or with 4.x (no
HookedTransformer; tests/test_transformer_bridge.py tests that), this whole file is skipped."""

import re
import sys
import types
import warnings

import pytest
import torch

transformer_lens = pytest.importorskip("transformer_lens")
try:
    transformer_lens.HookedTransformer
except (AttributeError, ImportError):  # 4.x raises ImportError for it
    pytest.skip("TransformerLens 4.x: no HookedTransformer", allow_module_level=True)

import utils.fused  # noqa: E402 (after the skip)
import utils.model  # noqa: E402
import utils.resources  # noqa: E402
from utils.transformer_lens_handoff import from_hooked_transformer, to_hooked_transformer  # noqa: E402

# 3.9.0 announces that HookedTransformer goes in 4.0 (which is why the version is pinned); the
# converter silences it, hooked_model() too
pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning")
TOLERANCE = dict(atol=1e-5, rtol=1e-5)


def small_model(
    attn_only: bool = False, d_vocab: int = 100, seed: int = 0
) -> utils.model.DemoTransformer:
    """A small model whose every weight, bias and LayerNorm weight is random (not 0 or 1), so that
    no misplaced one goes unseen. layer_norm_eps is not the default either: a converter that drops
    it is caught."""
    cfg = utils.model.Config(
        d_model=64,
        d_vocab=d_vocab,
        n_ctx=32,
        d_head=16,
        d_mlp=128,
        n_heads=4,
        n_layers=2,
        layer_norm_eps=1e-2,
        attn_only=attn_only,
    )
    model = utils.model.DemoTransformer(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(
                1 + 0.2 * noise if name.endswith(".w") else 0.2 * noise
            )  # LayerNorm weights around 1
    return model.eval()


def tokens(batch: int = 3, posn: int = 32, d_vocab: int = 100) -> torch.Tensor:
    return torch.randint(0, d_vocab, (batch, posn), generator=torch.Generator().manual_seed(1))


def hooked_model(**overrides):
    """A small TransformerLens model of its own config (random weights), for the settings we must
    refuse."""
    settings = dict(
        d_model=64,
        d_head=16,
        n_heads=4,
        d_mlp=128,
        n_layers=2,
        n_ctx=32,
        d_vocab=100,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        device="cpu",
        seed=0,
    )
    return transformer_lens.HookedTransformer(
        transformer_lens.HookedTransformerConfig(**{**settings, **overrides})
    )


@pytest.mark.parametrize("attn_only", [False, True])
def test_to_hooked_transformer_gives_the_same_logits(attn_only):
    model, ids = small_model(attn_only), tokens()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hooked = to_hooked_transformer(model)
    assert not [str(warning.message) for warning in caught]  # nothing the learner could act on
    assert isinstance(hooked, transformer_lens.HookedTransformer) and not hooked.training
    assert hasattr(hooked.blocks[0], "mlp") == (not attn_only)
    with torch.no_grad():
        torch.testing.assert_close(hooked(ids), model(ids), **TOLERANCE)
    # the hooks see what our model computes: layer 0's attention pattern
    _, cache = hooked.run_with_cache(ids)
    with torch.no_grad():
        residual = model.embed(ids) + model.pos_embed(ids)
        pattern = model.blocks[0].attn.attention_pattern(model.blocks[0].ln1(residual))
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"], pattern, **TOLERANCE)


@pytest.mark.parametrize("attn_only", [False, True])
def test_our_hook_points_are_transformer_lens_hook_points(attn_only):
    """The same names, in the same order, with the same shapes and the same activations (notebook
    05's HookedDemoTransformer)."""
    from utils.hooks import HookedDemoTransformer

    ours_model = HookedDemoTransformer.from_model(small_model(attn_only))
    theirs_model = to_hooked_transformer(ours_model)
    with torch.no_grad():
        _, ours = ours_model.run_with_cache(tokens())
        _, theirs = theirs_model.run_with_cache(tokens())
    assert list(ours.keys()) == list(theirs.keys())
    for name in ours.keys():
        torch.testing.assert_close(ours[name], theirs[name], **TOLERANCE, msg=name)


@pytest.mark.parametrize("attn_only", [False, True])
def test_from_hooked_transformer_gives_the_same_logits(attn_only):
    hooked = to_hooked_transformer(small_model(attn_only))
    # TransformerLens's weights changed,
    # so the round trip cannot pass by returning the original model
    with torch.no_grad():
        for parameter in hooked.parameters():
            parameter.add_(
                0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(2))
            )
    model = from_hooked_transformer(hooked)
    assert (
        type(model) is utils.model.DemoTransformer
        and model.cfg.attn_only == attn_only
        and not model.training
    )
    ids = tokens()
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hooked(ids), **TOLERANCE)


def test_from_hooked_transformer_builds_the_class_asked_for():
    hooked = to_hooked_transformer(small_model())
    model = from_hooked_transformer(hooked, model_class=utils.fused.FusedTransformer)
    assert type(model) is utils.fused.FusedTransformer
    with torch.no_grad():
        torch.testing.assert_close(model(tokens()), hooked(tokens()), **TOLERANCE)


def test_greedy_generation_without_a_tokenizer_matches_ours():
    """TransformerLens 3.9.0's generate needs use_past_kv_cache=False without a tokenizer (with its
    cache the new tokens get the wrong positions); with it, its greedy tokens are ours."""
    model = small_model()
    hooked = to_hooked_transformer(model)
    prompt = tokens(1, 5)
    theirs = hooked.generate(
        prompt,
        max_new_tokens=8,
        do_sample=False,
        use_past_kv_cache=False,
        stop_at_eos=False,
        verbose=False,
    )
    ours = prompt
    with torch.no_grad():
        for _ in range(8):
            ours = torch.cat([ours, model(ours)[:, -1:].argmax(-1)], dim=1)
    assert theirs.tolist() == ours.tolist()


def test_a_model_with_weights_transformer_lens_lacks_is_refused():
    model = small_model()
    model.blocks[0].attn.register_parameter(
        "extra", torch.nn.Parameter(torch.zeros(3))
    )  # e.g. a learner's own addition
    with pytest.raises(ValueError, match=r"has extra blocks\.0\.attn\.extra"):
        to_hooked_transformer(model)


def test_the_tokenizer_is_attached_and_adds_no_bos():
    tokenizer = utils.resources.load_tokenizer(
        local_only=True
    )  # the one built offline, without a name_or_path
    hooked = to_hooked_transformer(small_model(d_vocab=len(tokenizer)), tokenizer=tokenizer)
    text = "Hello world, this is"
    assert hooked.to_tokens(text).tolist() == [
        tokenizer(text).input_ids
    ]  # our models were trained without a BOS in front
    assert hooked.to_str_tokens(text) == ["Hello", " world", ",", " this", " is"]
    assert (
        tokenizer(text).input_ids[0] != tokenizer.bos_token_id
    )  # the learner's tokenizer is left as it was
    with pytest.raises(ValueError, match="d_vocab"):
        to_hooked_transformer(small_model(), tokenizer=tokenizer)  # 50257 token ids do not fit 100


@pytest.mark.parametrize(
    "overrides, setting",
    [
        (dict(normalization_type="LNPre"), "normalization_type='LNPre'"),
        (dict(act_fn="relu"), "act_fn='relu'"),
        (dict(positional_embedding_type="rotary"), "positional_embedding_type='rotary'"),
        (dict(parallel_attn_mlp=True), "parallel_attn_mlp=True"),
        (dict(n_key_value_heads=2), "n_key_value_heads=2"),
        (dict(d_vocab_out=50), "d_vocab_out=50"),
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=True"),
    ],
)
def test_unsupported_transformer_lens_settings_are_refused(overrides, setting):
    with pytest.raises(ValueError, match="cannot convert .*" + re.escape(setting)) as error:
        from_hooked_transformer(hooked_model(**overrides))
    assert "; supported: " in str(error.value)  # and what would do


def test_a_folded_model_is_refused_with_the_way_out():
    hooked = to_hooked_transformer(small_model())
    hooked.process_weights_()  # fold_ln=True, as HookedTransformer.from_pretrained does by default
    with pytest.raises(ValueError, match="fold_ln.*from_pretrained_no_processing"):
        from_hooked_transformer(hooked)


@pytest.mark.parametrize(
    "module",
    [None, types.ModuleType("transformer_lens")],
    ids=["missing", "4.x without HookedTransformer"],
)
def test_missing_transformer_lens_says_how_to_install(monkeypatch, module):
    monkeypatch.setitem(
        sys.modules, "transformer_lens", module
    )  # None makes `import transformer_lens` fail
    for convert, argument in (
        (to_hooked_transformer, small_model()),
        (from_hooked_transformer, object()),
    ):
        with pytest.raises(ImportError, match='pip install "transformer-lens==3.9.0"'):
            convert(argument)


def test_bad_arguments_get_a_type_error():
    with pytest.raises(TypeError, match="model must be a DemoTransformer"):
        to_hooked_transformer("gpt2")
    with pytest.raises(TypeError, match="model must be a DemoTransformer"):
        to_hooked_transformer(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="tokenizer must be None or a Hugging Face tokenizer"):
        to_hooked_transformer(small_model(), tokenizer="gpt2")
    with pytest.raises(TypeError, match="hooked must be a transformer_lens.HookedTransformer"):
        from_hooked_transformer(small_model())
    with pytest.raises(TypeError, match="model_class must be a model class"):
        from_hooked_transformer(to_hooked_transformer(small_model()), model_class=small_model())
