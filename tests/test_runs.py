"""utils/runs.py: one pipeline for notebook 03's run, reloaded by notebooks 04 and 05 without
training anything again."""

import pytest
import torch

import utils.runs
from utils.bpe import BPETokenizer
from utils.configs import get_config
from utils.model import DemoTransformer
from utils.resources import Corpus
from utils.runs import (
    corpus_fingerprint,
    load_trained_model,
    prepare_run,
    run_tokenizer,
    tokenizer_from_checkpoint,
)


@pytest.fixture(scope="module")
def ci_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    return folder, load_trained_model(get_config("ci"), folder, model_class=DemoTransformer)


def test_the_bpe_tokenizer_comes_back_from_a_checkpoint_exactly():
    text = "the cat sat on the mat, and the dog sat on the log. " * 20
    bpe = BPETokenizer.train(text, 300)
    saved = run_tokenizer("bpe", bpe=bpe).saved
    rebuilt = tokenizer_from_checkpoint(saved)
    sample = "the cat and the log sat <|endoftext|> on a mat"
    assert rebuilt.encode(sample) == bpe.encode(sample) and rebuilt.n_tokens == len(bpe)
    assert rebuilt.decode(bpe.encode(sample)) == sample
    assert rebuilt.decode([*bpe.encode("the"), len(bpe) + 5]) == "the"  # padding ids left out


def test_a_checkpoint_without_a_tokenizer_gets_a_clear_error():
    with pytest.raises(ValueError, match="records no tokenizer that can be rebuilt"):
        tokenizer_from_checkpoint("bpe")  # what earlier versions stored


def test_the_fingerprint_follows_the_text():
    a = Corpus("x", ["one doc", "two"], ["val"])
    assert corpus_fingerprint(a) == corpus_fingerprint(Corpus("x", ["one doc", "two"], ["val"]))
    assert corpus_fingerprint(a) != corpus_fingerprint(Corpus("x", ["one doc", "two"], ["val!"]))
    assert corpus_fingerprint(a) != corpus_fingerprint(Corpus("x", ["one doc"], ["two", "val"]))


def test_prepare_run_packs_what_notebook_03_trains_on():
    run = prepare_run(get_config("ci"))
    assert run.train_sequences.shape[1] == run.cfg.n_ctx == 64
    assert run.cfg.d_vocab == run.tokenizer.n_tokens == 512
    assert run.train_stream[0] == run.tokenizer.eot_id  # each document after <|endoftext|>
    assert set(run.recorded) == {"tokenizer", "corpus"}


def test_a_reload_trains_nothing(ci_model, monkeypatch):
    folder, first = ci_model
    assert first.meta["tokenizer"]["name"] == "bpe"

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(BPETokenizer, "train", no_training)
    monkeypatch.setattr(utils.runs, "prepare_run", no_training)
    again = load_trained_model(get_config("ci"), folder, model_class=DemoTransformer)
    assert again.checkpoint == first.checkpoint
    text = again.corpus.val[0][:200]
    assert again.encode(text) == first.encode(text)
    tokens = torch.tensor([again.encode(text)[:32]])
    with torch.no_grad():
        torch.testing.assert_close(again.model(tokens), first.model(tokens))


def test_a_checkpoint_of_another_corpus_is_not_used(ci_model, monkeypatch, capsys):
    folder, first = ci_model
    state = torch.load(first.checkpoint, weights_only=True)
    state["corpus"] = "TinyStories:0123456789abcdef"
    other = folder / "run_29990101-000000"
    other.mkdir()
    torch.save(state, other / "step_000001.pt")  # the newest file, of another corpus
    trained = []
    monkeypatch.setattr(utils.runs, "short_run_steps", lambda run_cfg: trained.append(1) or 2)
    load_trained_model(get_config("ci"), folder, model_class=DemoTransformer)
    assert trained and "trained with another corpus" in " ".join(capsys.readouterr().out.split())
