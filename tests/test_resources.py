"""utils/resources.py: offline detection never hangs, and every loader falls back to what is on the machine."""

import socket
import threading
import time

import pytest

from utils import resources


@pytest.fixture
def black_hole_endpoint(monkeypatch):
    """A local server that accepts connections and never answers: the worst case for an offline probe."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    yield
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()
    resources.is_online(refresh=True)


def test_hf_hub_offline_skips_the_probe(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(resources, "_probe", lambda *a: pytest.fail("probed although HF_HUB_OFFLINE=1"))
    assert resources.is_online(refresh=True) is False


def test_unresponsive_hub_means_offline_within_seconds(black_hole_endpoint, capsys):
    start = time.perf_counter()
    assert resources.is_online(refresh=True) is False
    tokenizer = resources.load_tokenizer()
    corpus = resources.load_corpus(max_chars=50_000)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"offline fallback took {elapsed:.1f} s"
    out = capsys.readouterr().out
    assert "[offline fallback] GPT-2 tokenizer built from" in out and "[offline fallback] corpus is Python's" in out
    assert len(tokenizer) == 50257 and corpus.name == "Python help topics"


def test_reference_model_fallback_is_announced_and_fast(monkeypatch, capsys):
    from utils.model import Config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resources.is_online(refresh=True)
    start = time.perf_counter()
    model, pretrained = resources.load_reference_gpt2(Config(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=1, n_ctx=16, d_vocab=100))
    assert time.perf_counter() - start < 10
    assert pretrained is False and model.config.n_embd == 32 and not model.training
    assert "randomly initialised" in capsys.readouterr().out
    _, pretrained = resources.load_reference_gpt2(pretrained=True)  # asked for weights that cannot be had: still a model
    assert pretrained is False


def test_local_tokenizer_is_gpt2():
    tok = resources.load_tokenizer(local_only=True)
    assert len(tok) == 50257
    assert tok.bos_token_id == tok.eos_token_id == tok.pad_token_id == 50256
    assert tok.encode("Hello world") == [15496, 995]


def test_corpus_split_is_deterministic_and_disjoint():
    a, b = resources.load_corpus(source="stdlib"), resources.load_corpus(source="stdlib")
    assert a.train == b.train and a.val == b.val
    assert not set(a.train) & set(a.val) and len(a.val) >= 1
    assert sum(map(len, a.train + a.val)) > 400_000


def test_corpus_max_chars():
    corpus = resources.load_corpus(max_chars=30_000, source="stdlib")
    assert sum(map(len, corpus.train + corpus.val)) == 30_000


@pytest.mark.parametrize("kwargs, match", [
    (dict(source="wikipedia"), "source must be"),
])
def test_corpus_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resources.load_corpus(**kwargs)


def test_split_bad_input():
    with pytest.raises(ValueError, match="val_fraction"):
        resources.split_documents(["a", "b"], val_fraction=1.5)
    with pytest.raises(ValueError, match="at least two documents"):
        resources.split_documents(["only one"])
