"""utils/model.py and utils/fused.py: the fused twin matches the explicit model, weights load strictly, bad input gets a clear error."""

import pytest
import torch

from utils.model import Config, DemoTransformer, config_from_hf, convert_hf_state_dict, generate, get_attention_patterns, load_gpt2_weights, next_token_loss
from utils.fused import FusedTransformer
from utils.resources import new_gpt2

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
    assert all(torch.equal(a, b) for a, b in zip(explicit.state_dict().values(), fused.state_dict().values()))
    with torch.no_grad():
        for p in explicit.parameters():  # non-trivial biases and LayerNorm weights, so that every parameter matters
            p.add_(0.1 * torch.randn_like(p))
    fused.load_state_dict(explicit.state_dict())
    tokens = torch.randint(0, 100, (3, 16))
    for model in (explicit, fused):
        next_token_loss(model(tokens), tokens).backward()
    torch.testing.assert_close(fused(tokens), explicit(tokens), atol=1e-5, rtol=1e-4)
    for (name, a), b in zip(explicit.named_parameters(), fused.parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-6, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_fused_twin_still_exposes_attention_patterns(hf_and_ours):
    _, ours = hf_and_ours
    fused = FusedTransformer(ours.cfg)
    fused.load_state_dict(ours.state_dict())
    tokens = torch.randint(0, 100, (2, 10))
    for a, b in zip(get_attention_patterns(fused, tokens), get_attention_patterns(ours, tokens)):
        torch.testing.assert_close(a, b)


def test_next_token_loss_is_the_mean_over_shifted_positions():
    logits, tokens = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(next_token_loss(logits, tokens), expected)


def test_logits_loss_and_greedy_text_match_hugging_face(hf_and_ours):
    hf, ours = hf_and_ours
    tokens = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        out = hf(tokens, labels=tokens)
        torch.testing.assert_close(ours(tokens), out.logits, atol=1e-4, rtol=1e-3)
        assert abs(next_token_loss(ours(tokens), tokens) - out.loss).item() < 1e-4
        ref = hf.generate(tokens[:1, :4], max_new_tokens=8, do_sample=False, attention_mask=torch.ones(1, 4, dtype=torch.long), pad_token_id=0)
    assert torch.equal(generate(ours, tokens[:1, :4], 8), ref)


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


@pytest.mark.parametrize("bad, error, match", [
    (torch.tensor([[0, 100]]), ValueError, r"token ids must be in \[0, 100\)"),
    (torch.tensor([[-1, 3]]), ValueError, "token ids must be in"),
    (torch.zeros(1, 17, dtype=torch.long), ValueError, "exceeds n_ctx = 16"),
    (torch.tensor([[1.0, 2.0]]), TypeError, "integer token ids"),
    (torch.tensor([1, 2]), ValueError, r"shape \[batch, posn\].*unsqueeze"),
    (torch.zeros(1, 2, 3, dtype=torch.long), ValueError, r"shape \[batch, posn\]"),
    (torch.zeros(1, 0, dtype=torch.long), ValueError, r"shape \(1, 0\): give at least one sequence of at least one token"),
    (torch.zeros(0, 3, dtype=torch.long), ValueError, r"shape \(0, 3\)"),
    (torch.tensor([[1, 2]], dtype=torch.uint8), TypeError, r"integer token ids \(torch.long\), got dtype torch.uint8; use tokens.long\(\)"),
    (torch.tensor([[True, False]]), TypeError, "got dtype torch.bool"),
    ([[1, 2]], TypeError, "must be a torch.Tensor"),
])
def test_bad_tokens_get_clear_errors(hf_and_ours, bad, error, match):
    _, ours = hf_and_ours
    fused = FusedTransformer(ours.cfg)
    for model in (ours, fused):  # on a CPU the fused model checks ids too
        with pytest.raises(error, match=match):
            model(bad)


@pytest.mark.parametrize("kwargs, match", [(dict(d_model=0), "d_model"), (dict(n_heads=2.5), "n_heads")])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Config(**kwargs)


def test_generate_sampling_is_seeded_and_rejects_negative_temperature(hf_and_ours):
    _, ours = hf_and_ours
    prompt = torch.tensor([[1, 2, 3]])
    a = generate(ours, prompt, 5, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(0))
    b = generate(ours, prompt, 5, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (1, 8)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(ours, prompt, 1, temperature=-1)


def test_attention_heatmap_fits_the_output_area_and_labels_every_token():
    from utils.plotting import plot_attention_patterns

    fig = plot_attention_patterns(torch.softmax(torch.randn(4, 12, 12), -1), [f"t{i}" for i in range(12)])
    assert fig.layout.width is None and fig.layout.yaxis.dtick == 1
