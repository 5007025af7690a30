"""utils/hf_export.py: our models to Hugging Face's GPT2LMHeadModel and a save_pretrained folder,
and back; exact both ways, with a clear error for what GPT-2's format cannot hold."""

import dataclasses

import pytest
import torch
import transformers

from utils.fused import FusedTransformer
from utils.hf_export import from_hf_gpt2, load_hf_folder, save_hf_folder, to_hf_gpt2
from utils.hooks import HookedDemoTransformer
from utils.model import Config, DemoTransformer, load_gpt2_weights
from utils.resources import load_tokenizer, new_gpt2

CFG = Config(d_model=64, n_heads=4, d_head=16, d_mlp=256, n_layers=2, n_ctx=32, d_vocab=100)
TOKENS = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))


def _trained_like(model_class, cfg):
    """Random weights, W_U its own (not W_E's transpose), b_U zero."""
    torch.manual_seed(0)
    model = model_class(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        model.unembed.b_U.zero_()
    return model


@pytest.mark.parametrize("model_class", [DemoTransformer, FusedTransformer, HookedDemoTransformer])
@pytest.mark.parametrize("attn_only", [False, True])
def test_export_and_back_are_exact(model_class, attn_only):
    model = _trained_like(model_class, dataclasses.replace(CFG, attn_only=attn_only))
    hf = to_hf_gpt2(model)
    assert isinstance(hf, transformers.GPT2LMHeadModel) and not hf.config.tie_word_embeddings
    with torch.no_grad():
        torch.testing.assert_close(hf(TOKENS).logits, model(TOKENS), atol=2e-6, rtol=1e-5)
        back = from_hf_gpt2(hf, model_class)
    assert back.cfg == model.cfg and type(back) is model_class
    for (name, ours), theirs in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(ours, theirs), name


def test_gpt2_itself_goes_out_tied_and_comes_back():
    hf = new_gpt2(CFG)
    model = load_gpt2_weights(DemoTransformer(CFG), hf)
    again = to_hf_gpt2(model)
    assert again.config.tie_word_embeddings
    for name, tensor in hf.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name


def test_a_float64_model_exports_in_float64():
    model = _trained_like(DemoTransformer, CFG).double()
    hf = to_hf_gpt2(model)
    assert hf.dtype == torch.float64
    with torch.no_grad():
        assert (hf(TOKENS).logits - model(TOKENS)).abs().max() < 1e-12


def test_a_save_pretrained_folder_loads_offline_and_generates(tmp_path):
    model = _trained_like(DemoTransformer, dataclasses.replace(CFG, d_vocab=50257))
    folder = save_hf_folder(model, tmp_path / "export", load_tokenizer(local_only=True))
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer("Once upon a time", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(hf(prompt).logits, model(prompt), atol=2e-6, rtol=1e-5)
    theirs = hf.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=50256)
    from utils.sampling import generate

    assert torch.equal(theirs, generate(model, prompt, 5, temperature=0))
    # the attention-only flag survives the folder: the way back drops the zero MLPs
    attn_only = _trained_like(DemoTransformer, dataclasses.replace(CFG, attn_only=True))
    save_hf_folder(attn_only, tmp_path / "attn_only")
    back = from_hf_gpt2(load_hf_folder(tmp_path / "attn_only"))
    assert back.cfg.attn_only and torch.equal(back(TOKENS), attn_only(TOKENS))
    with pytest.raises(FileNotFoundError, match="not a save_pretrained folder"):
        load_hf_folder(tmp_path)


def test_what_gpt2_cannot_hold_is_refused_in_one_line(tmp_path):
    model = _trained_like(DemoTransformer, CFG)
    with torch.no_grad():
        model.unembed.b_U.fill_(0.5)
    with pytest.raises(ValueError, match="b_U is not zero .*drop_unembed_bias=True"):
        to_hf_gpt2(model)
    dropped = to_hf_gpt2(model, drop_unembed_bias=True)
    with torch.no_grad():
        torch.testing.assert_close(dropped(TOKENS).logits + 0.5, model(TOKENS), atol=2e-6, rtol=0)
    with pytest.raises(ValueError, match="n_heads \\* d_head must be d_model"):
        to_hf_gpt2(DemoTransformer(dataclasses.replace(CFG, d_head=8)))
    with pytest.raises(TypeError, match="model must be a DemoTransformer"):
        to_hf_gpt2(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="hf_model must be a Hugging Face GPT-2"):
        from_hf_gpt2(DemoTransformer(CFG))
    hf = to_hf_gpt2(_trained_like(DemoTransformer, dataclasses.replace(CFG, attn_only=True)))
    with torch.no_grad():
        hf.transformer.h[0].mlp.c_proj.bias.fill_(1.0)
    with pytest.raises(ValueError, match="its MLPs are not zero"):
        from_hf_gpt2(hf)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        save_hf_folder(DemoTransformer(CFG), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="the tokenizer has 50257 tokens"):
        save_hf_folder(DemoTransformer(CFG), tmp_path / "new", load_tokenizer(local_only=True))


def test_a_vocabulary_padded_for_the_gpu_exports_with_gpt2s_end_of_text(tmp_path):
    """On a GPU, a run pads GPT-2's 50,257 tokens to 50,304 ids (utils.runs): the export with the
    tokenizer says <|endoftext|> is 50256, where generate stops (the last id, 50303, is padding
    no text has), and the tokenizer, shorter than d_vocab, is accepted."""
    from utils.gpu import padded_vocab_size

    tokenizer = load_tokenizer(local_only=True)
    padded = dataclasses.replace(CFG, d_vocab=padded_vocab_size(len(tokenizer)))
    model = _trained_like(DemoTransformer, padded)
    folder = save_hf_folder(model, tmp_path / "export", tokenizer)
    hf = load_hf_folder(folder)
    assert padded.d_vocab == 50304 and tokenizer.eos_token_id == 50256
    assert hf.config.eos_token_id == hf.config.bos_token_id == 50256
    assert hf.generation_config.eos_token_id == 50256
    assert to_hf_gpt2(model).config.eos_token_id == 50303  # no tokenizer: the last id, as GPT-2's
    with pytest.raises(ValueError, match="eos_token_id must be an int >= 0 and <= 50303"):
        to_hf_gpt2(model, eos_token_id=50304)
