"""utils/model.py and utils/fused.py: the fused twin matches the explicit model, weights load
strictly, bad input gets a clear error."""

import pytest
import torch

from utils.model import (
    Config,
    DemoTransformer,
    config_from_hf,
    convert_hf_state_dict,
    get_attention_patterns,
    load_gpt2_weights,
    next_token_loss,
)
from utils.fused import FusedTransformer
from utils.resources import new_gpt2
from utils.sampling import (
    generate,
)  # the project's one generate (notebook 04); notebook 02 uses it greedily

CFG = Config(d_model=32, d_vocab=100, n_ctx=16, d_head=8, d_mlp=64, n_heads=4, n_layers=2)


@pytest.fixture(scope="module")
def hf_and_ours():
    torch.manual_seed(0)
    hf = new_gpt2(CFG)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return hf, load_gpt2_weights(DemoTransformer(config_from_hf(hf.config)), hf).eval()


def test_fused_twin_has_the_same_weights_outputs_and_gradients():
    torch.manual_seed(0)
    explicit = DemoTransformer(CFG)
    torch.manual_seed(0)
    fused = FusedTransformer(CFG)  # built in the same order: the same seed gives the same weights
    assert list(explicit.state_dict()) == list(fused.state_dict())
    assert all(
        torch.equal(a, b)
        for a, b in zip(explicit.state_dict().values(), fused.state_dict().values())
    )
    with torch.no_grad():
        for p in (
            explicit.parameters()
        ):  # non-trivial biases and LayerNorm weights, so that every parameter matters
            p.add_(0.1 * torch.randn_like(p))
    fused.load_state_dict(explicit.state_dict())
    tokens = torch.randint(0, 100, (3, 16))
    for model in (explicit, fused):
        next_token_loss(model(tokens), tokens).backward()
    torch.testing.assert_close(fused(tokens), explicit(tokens), atol=1e-5, rtol=1e-4)
    for (name, a), b in zip(explicit.named_parameters(), fused.parameters()):
        torch.testing.assert_close(
            b.grad, a.grad, atol=1e-6, rtol=1e-4, msg=lambda m: f"{name}: {m}"
        )


# fused_next_token_loss (notebook 03): the trainer's loss, next_token_loss with its gradient by hand
def _logits_and_tokens(batch, posn, d_vocab, dtype, token_dtype=torch.int64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(batch, posn, d_vocab, generator=generator)).to(dtype)
    tokens = torch.randint(0, d_vocab, (batch, posn), generator=generator, dtype=token_dtype)
    return logits, tokens


def _loss_and_gradient(loss_fn, logits, tokens, scale=1.0):
    logits = logits.clone().requires_grad_()
    loss = loss_fn(logits, tokens)
    (scale * loss).backward()
    return loss, logits.grad


@pytest.mark.parametrize(
    "batch, posn, d_vocab, dtype, token_dtype, scale",
    [
        (1, 2, 5, torch.float32, torch.int64, 1.0),  # one position predicts
        (3, 7, 11, torch.float32, torch.int32, 1.0),
        (4, 16, 100, torch.float64, torch.int64, 0.25),  # a micro-batch's loss / n
        (2, 9, 50, torch.float32, torch.int64, 65536.0),  # float16's gradient scaler
        (2, 8, 64, torch.bfloat16, torch.int64, 1.0),  # bf16 autocast's logits
    ],
)
def test_fused_next_token_loss_has_next_token_losss_value_and_gradient(
    batch, posn, d_vocab, dtype, token_dtype, scale
):
    from utils.fused import fused_next_token_loss

    logits, tokens = _logits_and_tokens(batch, posn, d_vocab, dtype, token_dtype)
    # bf16 logits: in float32, as autocast runs F.cross_entropy; the gradient comes back in bf16
    reference = (lambda z, t: next_token_loss(z.float(), t)) if dtype == torch.bfloat16 else None
    loss, grad = _loss_and_gradient(reference or next_token_loss, logits, tokens, scale)
    fused_loss, fused_grad = _loss_and_gradient(fused_next_token_loss, logits, tokens, scale)
    assert fused_loss.dtype == loss.dtype == torch.promote_types(dtype, torch.float32)
    assert fused_grad.dtype == grad.dtype == dtype
    exact = dict(atol=1e-6, rtol=1e-5) if dtype != torch.bfloat16 else {}
    torch.testing.assert_close(fused_loss, loss, **exact)
    torch.testing.assert_close(fused_grad, grad, **exact)
    assert not fused_grad[:, -1].any()  # the last position predicts nothing


def test_fused_next_token_loss_leaves_the_logits_alone_and_its_saved_tensor_is_used_once():
    """The backward edits the log-probabilities it saved, never the logits; a second backward
    through the same graph is PyTorch's error, not a second, wrong gradient."""
    from utils.fused import fused_next_token_loss

    logits, tokens = _logits_and_tokens(2, 8, 30, torch.float32)
    logits.requires_grad_()
    before = logits.detach().clone()
    loss = fused_next_token_loss(logits, tokens)
    loss.backward(retain_graph=True)
    assert torch.equal(logits.detach(), before)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    (grad,) = torch.autograd.grad(fused_next_token_loss(logits, tokens), logits, create_graph=True)
    # a gradient of the gradient: an error (once_differentiable), never a wrong number
    with pytest.raises(RuntimeError, match="does not require grad|once_differentiable"):
        grad.sum().backward()
    with torch.no_grad():  # validation's use: no graph, the same number
        torch.testing.assert_close(
            fused_next_token_loss(logits, tokens), next_token_loss(logits, tokens)
        )


@pytest.mark.parametrize(
    "args, match",
    [
        (lambda z, t: (t, z), "logits must be a float tensor"),  # swapped
        (lambda z, t: (z[:, :1], t[:, :1]), "one position"),
        (lambda z, t: (z, t[:, :-1]), "tokens must be the integer token ids"),
        (lambda z, t: (z, t.float()), "tokens must be the integer token ids"),
        (lambda z, t: (z, t + 30), r"ids in \[0, 30\)"),
    ],
)
def test_fused_next_token_loss_names_bad_input(args, match):
    from utils.fused import fused_next_token_loss

    logits, tokens = _logits_and_tokens(2, 8, 30, torch.float32)
    with pytest.raises(ValueError, match=match):
        fused_next_token_loss(*args(logits, tokens))


def test_fused_next_token_loss_compiles_to_the_same_gradients():
    """SafeTrainer's compile=True compiles model and loss together, through the hand-written
    backward (its in-place edits included)."""
    from utils.fused import fused_next_token_loss

    torch.manual_seed(0)
    model = FusedTransformer(CFG)
    tokens = torch.randint(0, CFG.d_vocab, (3, 16))
    compiled = torch.compile(lambda t: fused_next_token_loss(model(t), t))
    losses, grads = [], []
    for loss_fn in (compiled, lambda t: next_token_loss(model(t), t)):
        model.zero_grad()
        losses.append(loss_fn(tokens))
        losses[-1].backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(losses[0], losses[1])
    for compiled_grad, grad in zip(*grads):
        torch.testing.assert_close(compiled_grad, grad, atol=1e-6, rtol=1e-4)


def test_fused_twin_still_exposes_attention_patterns(hf_and_ours):
    _, ours = hf_and_ours
    fused = FusedTransformer(ours.cfg)
    fused.load_state_dict(ours.state_dict())
    tokens = torch.randint(0, 100, (2, 10))
    for a, b in zip(get_attention_patterns(fused, tokens), get_attention_patterns(ours, tokens)):
        torch.testing.assert_close(a, b)


def test_next_token_loss_is_the_mean_over_shifted_positions():
    logits, tokens = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 7), tokens[:, 1:].reshape(-1)
    )
    torch.testing.assert_close(next_token_loss(logits, tokens), expected)


def test_logits_loss_and_greedy_text_match_hugging_face(hf_and_ours):
    hf, ours = hf_and_ours
    tokens = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        out = hf(tokens, labels=tokens)
        torch.testing.assert_close(ours(tokens), out.logits, atol=1e-4, rtol=1e-3)
        assert abs(next_token_loss(ours(tokens), tokens) - out.loss).item() < 1e-4
        ref = hf.generate(
            tokens[:1, :4],
            max_new_tokens=8,
            do_sample=False,
            attention_mask=torch.ones(1, 4, dtype=torch.long),
            pad_token_id=0,
        )
    assert torch.equal(generate(ours, tokens[:1, :4], 8, temperature=0), ref)


def test_loading_is_strict(hf_and_ours):
    hf, ours = hf_and_ours
    sd = convert_hf_state_dict(hf.state_dict(), ours.cfg)
    del sd["blocks.1.mlp.b_in"]
    with pytest.raises(RuntimeError, match="Missing key"):
        ours.load_state_dict(sd, strict=True)


def test_attention_patterns_are_causal_distributions(hf_and_ours):
    _, ours = hf_and_ours
    patterns = get_attention_patterns(ours, torch.randint(0, 100, (2, 10)))
    assert len(patterns) == 2 and patterns[0].shape == (2, 4, 10, 10)
    torch.testing.assert_close(patterns[1].sum(-1), torch.ones(2, 4, 10))
    assert torch.all(patterns[0].triu(diagonal=1) == 0)


def _run_generate(**kwargs):
    args = (
        dict(tokens=torch.tensor([[1, 2, 3]]), max_new_tokens=2, temperature=1.0, top_k=10) | kwargs
    )
    return generate(DemoTransformer(CFG), args.pop("tokens"), **args)


def _load(hf_shape, ours=CFG):
    """Load a random Hugging Face GPT-2 of CFG's shape with `hf_shape` changes into a
    DemoTransformer of `ours`."""
    return load_gpt2_weights(
        DemoTransformer(ours), new_gpt2(Config(**{**CFG.__dict__, **hf_shape}))
    )


def _tokens_row(name, bad, error, *needles):
    return [
        pytest.param(lambda m, bad=bad: m(bad), kind, error, needles, id=f"{kind}-tokens-{name}")
        for kind in ("ours", "fused")
    ]


BAD_INPUT = [
    # tokens, through DemoTransformer.forward and its fused twin (both call validate_tokens)
    *_tokens_row(
        "id-too-big",
        torch.tensor([[0, 100]]),
        ValueError,
        "tokens must be ids in [0, 100)",
        "0 to 100",
    ),
    *_tokens_row(
        "negative-id", torch.tensor([[-1, 3]]), ValueError, "tokens must be ids in", "-1 to 3"
    ),
    *_tokens_row(
        "too-long",
        torch.zeros(1, 17, dtype=torch.long),
        ValueError,
        "tokens has 17 positions",
        "n_ctx = 16",
    ),
    *_tokens_row(
        "float",
        torch.tensor([[1.0, 2.0]]),
        TypeError,
        "tokens",
        "torch.float32",
        "torch.int64",
        "torch.int32",
    ),
    *_tokens_row(
        "uint8",
        torch.tensor([[1, 2]], dtype=torch.uint8),
        TypeError,
        "tokens",
        "torch.uint8",
        "torch.int64",
        "torch.int32",
        "tokens.long()",
    ),
    *_tokens_row(
        "int16",
        torch.tensor([[1, 2]], dtype=torch.int16),
        TypeError,
        "tokens",
        "torch.int16",
        "torch.int64",
        "torch.int32",
    ),
    *_tokens_row(
        "bool", torch.tensor([[True, False]]), TypeError, "tokens", "torch.bool", "torch.int64"
    ),
    *_tokens_row(
        "1-D", torch.tensor([1, 2]), ValueError, "tokens", "[batch, posn]", "(2,)", "tokens[None]"
    ),
    *_tokens_row(
        "3-D",
        torch.zeros(1, 2, 3, dtype=torch.long),
        ValueError,
        "tokens",
        "[batch, posn]",
        "(1, 2, 3)",
    ),
    *_tokens_row(
        "no-positions",
        torch.zeros(1, 0, dtype=torch.long),
        ValueError,
        "tokens",
        "(1, 0)",
        "at least one token",
    ),
    *_tokens_row(
        "empty-batch",
        torch.zeros(0, 3, dtype=torch.long),
        ValueError,
        "tokens",
        "(0, 3)",
        "at least one sequence",
    ),
    *_tokens_row(
        "meta",
        torch.zeros(1, 3, dtype=torch.long, device="meta"),
        ValueError,
        "tokens",
        "meta",
        "cpu",
    ),
    *_tokens_row("list", [[1, 2]], TypeError, "tokens", "list", "torch.tensor"),
    # Config: sizes are ints >= 1 (bools refused), layer_norm_eps and init_range finite numbers > 0
    pytest.param(
        lambda: Config(d_model=0),
        None,
        ValueError,
        ("Config.d_model", "0"),
        id="config-d_model-zero",
    ),
    pytest.param(
        lambda: Config(n_heads=2.5),
        None,
        TypeError,
        ("Config.n_heads", "2.5"),
        id="config-n_heads-float",
    ),
    pytest.param(
        lambda: Config(d_model=True),
        None,
        TypeError,
        ("Config.d_model", "True", "bool"),
        id="config-d_model-bool",
    ),
    pytest.param(
        lambda: Config(n_layers="2"),
        None,
        TypeError,
        ("Config.n_layers", "'2'"),
        id="config-n_layers-str",
    ),
    pytest.param(
        lambda: Config(layer_norm_eps=0),
        None,
        ValueError,
        ("Config.layer_norm_eps", "0", "> 0"),
        id="config-eps-zero",
    ),
    pytest.param(
        lambda: Config(layer_norm_eps=-1e-5),
        None,
        ValueError,
        ("Config.layer_norm_eps", "-1e-05"),
        id="config-eps-negative",
    ),
    pytest.param(
        lambda: Config(layer_norm_eps=float("nan")),
        None,
        ValueError,
        ("Config.layer_norm_eps", "nan"),
        id="config-eps-nan",
    ),
    pytest.param(
        lambda: Config(layer_norm_eps=None),
        None,
        TypeError,
        ("Config.layer_norm_eps", "None"),
        id="config-eps-none",
    ),
    pytest.param(
        lambda: Config(init_range=0),
        None,
        ValueError,
        ("Config.init_range", "0", "> 0"),
        id="config-init_range-zero",
    ),
    pytest.param(
        lambda: Config(init_range=-0.02),
        None,
        ValueError,
        ("Config.init_range", "-0.02"),
        id="config-init_range-negative",
    ),
    pytest.param(
        lambda: Config(init_range="0.02"),
        None,
        TypeError,
        ("Config.init_range", "'0.02'"),
        id="config-init_range-str",
    ),
    pytest.param(
        lambda: Config(init_range=True),
        None,
        TypeError,
        ("Config.init_range", "True"),
        id="config-init_range-bool",
    ),
    # load_gpt2_weights: the configs must agree, even where the parameter shapes happen to match
    pytest.param(
        lambda: _load(dict(n_layers=3)),
        None,
        ValueError,
        ("n_layers", "model has 2", "hf_model has 3", "config_from_hf"),
        id="load-3-layers-into-2",
    ),
    pytest.param(
        lambda: _load(dict(n_layers=1)),
        None,
        ValueError,
        ("n_layers", "model has 2", "hf_model has 1"),
        id="load-1-layer-into-2",
    ),
    pytest.param(
        lambda: _load(
            dict(d_model=64, n_heads=8, d_head=8),
            ours=Config(**{**CFG.__dict__, "d_model": 64, "n_heads": 4, "d_head": 16}),
        ),
        None,
        ValueError,
        ("n_heads", "model has 4", "hf_model has 8", "d_head", "model has 16", "hf_model has 8"),
        id="load-8x8-heads-into-4x16",
    ),
    pytest.param(
        lambda: _load(dict(d_vocab=120, n_ctx=20, d_mlp=128, layer_norm_eps=1e-6)),
        None,
        ValueError,
        (
            "d_vocab",
            "hf_model has 120",
            "n_ctx",
            "hf_model has 20",
            "d_mlp",
            "hf_model has 128",
            "layer_norm_eps",
            "1e-06",
        ),
        id="load-other-sizes",
    ),
    pytest.param(
        lambda: load_gpt2_weights(DemoTransformer(CFG), None),
        None,
        TypeError,
        ("hf_model", "None", "GPT2LMHeadModel"),
        id="load-hf-none",
    ),
    pytest.param(
        lambda: load_gpt2_weights(DemoTransformer(CFG), new_gpt2(CFG).state_dict()),
        None,
        TypeError,
        ("hf_model", "dict", "convert_hf_state_dict"),
        id="load-hf-state-dict",
    ),
    pytest.param(
        lambda: load_gpt2_weights(None, new_gpt2(CFG)),
        None,
        TypeError,
        ("model", "None", "DemoTransformer"),
        id="load-model-none",
    ),
    # generate
    pytest.param(
        lambda: _run_generate(temperature=-1),
        None,
        ValueError,
        ("temperature", "-1", ">= 0"),
        id="generate-temperature-negative",
    ),
    pytest.param(
        lambda: _run_generate(temperature=float("nan")),
        None,
        ValueError,
        ("temperature", "nan"),
        id="generate-temperature-nan",
    ),
    pytest.param(
        lambda: _run_generate(temperature=None),
        None,
        TypeError,
        ("temperature", "None"),
        id="generate-temperature-none",
    ),
    pytest.param(
        lambda: _run_generate(temperature="0.8"),
        None,
        TypeError,
        ("temperature", "'0.8'"),
        id="generate-temperature-str",
    ),
    pytest.param(
        lambda: _run_generate(top_k=0),
        None,
        ValueError,
        ("top_k", "0", "positive int"),
        id="generate-top_k-zero",
    ),
    pytest.param(
        lambda: _run_generate(top_k=2.5),
        None,
        TypeError,
        ("top_k", "2.5"),
        id="generate-top_k-float",
    ),
    pytest.param(
        lambda: _run_generate(max_new_tokens=-1),
        None,
        ValueError,
        ("max_new_tokens", "-1", ">= 0"),
        id="generate-max_new_tokens-negative",
    ),
    pytest.param(
        lambda: _run_generate(max_new_tokens=2.0),
        None,
        TypeError,
        ("max_new_tokens", "2.0"),
        id="generate-max_new_tokens-float",
    ),
    pytest.param(
        lambda: _run_generate(tokens=torch.tensor([1, 2, 3])),
        None,
        ValueError,
        ("tokens", "(3,)", "tokens[None]"),
        id="generate-1-D-prompt",
    ),
    pytest.param(
        lambda: _run_generate(tokens=[[1, 2, 3]]),
        None,
        TypeError,
        ("tokens", "list", "torch.tensor"),
        id="generate-list-prompt",
    ),
]


@pytest.mark.parametrize("call, model, error, needles", BAD_INPUT)
def test_bad_input_gets_a_clear_error_naming_the_argument_and_value(
    hf_and_ours, call, model, error, needles
):
    if model is None:
        call_it = call
    else:
        ours = hf_and_ours[1]
        target = ours if model == "ours" else FusedTransformer(ours.cfg)
        call_it = lambda: call(target)  # noqa: E731
    with pytest.raises(error) as info:
        call_it()
    missing = [needle for needle in needles if needle not in str(info.value)]
    assert not missing, f"{type(info.value).__name__}: {info.value}\n lacks {missing}"


def test_config_accepts_numpy_sizes_as_ints_and_numpy_floats():
    np = pytest.importorskip("numpy")
    cfg = Config(
        d_model=np.int64(32),
        n_heads=np.int32(4),
        d_head=8,
        layer_norm_eps=np.float32(1e-5),
        init_range=np.float64(0.02),
    )
    assert type(cfg.d_model) is int and type(cfg.n_heads) is int and cfg.d_model == 32
    assert type(cfg.layer_norm_eps) is float and type(cfg.init_range) is float


def test_int32_tokens_work_through_the_model_and_the_loss(hf_and_ours):
    _, ours = hf_and_ours
    tokens = torch.randint(0, 100, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(
            next_token_loss(ours(tokens.int()), tokens.int()), next_token_loss(ours(tokens), tokens)
        )


def test_generate_sampling_is_seeded(hf_and_ours):
    _, ours = hf_and_ours
    prompt = torch.tensor([[1, 2, 3]])
    a = generate(ours, prompt, 5, temperature=1.0, top_k=10, seed=0)
    b = generate(ours, prompt, 5, temperature=1.0, top_k=10, seed=0)
    assert torch.equal(a, b) and a.shape == (1, 8)
    assert torch.equal(generate(ours, prompt, 0), prompt)


def test_attention_heatmap_fits_the_output_area_and_labels_every_token():
    from utils.plotting import plot_attention_patterns

    fig = plot_attention_patterns(
        torch.softmax(torch.randn(4, 12, 12), -1), [f"t{i}" for i in range(12)]
    )
    assert fig.layout.width is None and fig.layout.yaxis.dtick == 1


@pytest.mark.parametrize("n_tokens", [12, 20, 35, 49, 64, 100])
def test_attention_heatmap_labels_have_room_at_every_length(n_tokens):
    """Issue 20: at 35 to 49 tokens four panels a row left ~5 px per label. Every label shown
    gets at least 8 px (its font size) of its panel's height."""
    from utils.plotting import plot_attention_patterns

    fig = plot_attention_patterns(
        torch.softmax(torch.randn(6, n_tokens, n_tokens), -1), [f"t{i}" for i in range(n_tokens)]
    )
    start, end = fig.layout.xaxis.domain  # the first panel's share of the figure's width
    shown = -(-n_tokens // fig.layout.yaxis.dtick)
    assert (end - start) * 900 / shown >= 8, ((start, end), shown)  # of a ~900 px output area
    assert fig.layout.yaxis.dtick <= 3  # still most tokens named
