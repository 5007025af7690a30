"""utils/bpe.py: GPT-2-exact encoding, lossless round trips, incremental training, clear errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.bpe import BPETokenizer, bytes_to_unicode, pretokenize
from utils.resources import load_corpus, load_tokenizer

VARIED = [
    "", " ", "\n", "Hello world!", "  leading and   multiple   spaces  ", "trailing space ", "\t\ttabs\tand\nnew\n\n\nlines\r\n",
    "I'm sure they'd've said it's John's; we'll see. Y'ALL'RE", "don't DON'T Don't", "emoji 🤖🚀👩‍👩‍👧 and flags 🇬🇧",
    "accents: café naïve façade Ångström", "中文字符和日本語のテキスト한국어", "Ελληνικά и русский", "עברית عربي",
    "def f(x):\n    return x**2  # square\n\nclass A:\n\tpass\n", "1234567890 + 3.14159 = ? 1,000,000 1e-5 0x1F",
    "<|endoftext|>between<|endoftext|>docs", "<|endoftext|>", "<|endoftext", "a<|endoftext|>b <|endoftext|> c",
    "URLs: https://example.com/a?b=c&d=e#f", "!!!???...---___***", "\u200b zero width \u00a0 nbsp \u3000 ideographic space",
    "   \n   \n", "x" * 300, " ".join(["supercalifragilisticexpialidocious"] * 5), "\x00\x01\x7f control bytes",
]


@pytest.fixture(scope="module")
def gpt2_bpe():
    return BPETokenizer.from_gpt2()


@pytest.fixture(scope="module")
def hf_tokenizer():
    return load_tokenizer(local_only=True)


def test_gpt2_vocabulary(gpt2_bpe):
    assert len(gpt2_bpe) == 50257 and gpt2_bpe.eot_id == 50256 and len(gpt2_bpe.merge_ranks) == 50000


@pytest.mark.parametrize("text", VARIED)
def test_matches_hugging_face_exactly(text, gpt2_bpe, hf_tokenizer):
    assert gpt2_bpe.encode(text) == hf_tokenizer.encode(text)
    assert gpt2_bpe.decode(gpt2_bpe.encode(text)) == text


def test_matches_hugging_face_on_the_corpus(gpt2_bpe, hf_tokenizer):
    corpus = load_corpus(max_chars=100_000)
    for doc in corpus.train + corpus.val:
        assert gpt2_bpe.encode(doc) == hf_tokenizer.encode(doc)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_matches_hugging_face_and_round_trips(text):
    bpe, hf = _shared()
    ids = bpe.encode(text)
    assert ids == hf.encode(text)
    assert bpe.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \n'sT1😀é<|>endoftext")), max_size=60))
def test_dense_tricky_alphabet(text):
    bpe, hf = _shared()
    assert bpe.encode(text) == hf.encode(text)
    assert bpe.decode(bpe.encode(text)) == text


_cache = {}


def _shared():
    if not _cache:
        _cache["x"] = (BPETokenizer.from_gpt2(), load_tokenizer(local_only=True))
    return _cache["x"]


@pytest.fixture(scope="module")
def trained():
    corpus = load_corpus(max_chars=100_000)
    return BPETokenizer.train(corpus.train_text, 600), corpus


def test_training_reaches_vocab_size_and_is_deterministic(trained):
    bpe, corpus = trained
    assert len(bpe) == 600 and bpe.eot_id == 599
    again = BPETokenizer.train(corpus.train_text, 600)
    assert again.vocab == bpe.vocab and again.merge_ranks == bpe.merge_ranks


def test_trained_tokenizer_compresses_and_round_trips(trained):
    bpe, corpus = trained
    for doc in corpus.val:
        ids = bpe.encode(doc)
        assert bpe.decode(ids) == doc
        assert len(ids) < 0.6 * len(doc.encode("utf-8"))  # merges must actually shorten the text


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_trained_tokenizer_round_trips_any_text(text):
    bpe = _trained_small()
    assert bpe.decode(bpe.encode(text)) == text


def _trained_small():
    if "small" not in _cache:
        _cache["small"] = BPETokenizer.train("the cat sat on the mat. the dog sat on the log. " * 20, 300)
    return _cache["small"]


def test_first_merge_is_the_most_frequent_pair():
    bpe = BPETokenizer.train("ab ab ab ab cd", 258)
    assert bpe.id_to_token[256] == "ab"


def test_merges_never_cross_pretokens():
    bpe = BPETokenizer.train("a.b " * 200, 300)
    assert all("." not in tok or tok.strip(".") == "" for tok in bpe.vocab if tok != "<|endoftext|>")


def test_bytes_to_unicode_is_a_bijection():
    mapping = bytes_to_unicode()
    assert sorted(mapping) == list(range(256)) and len(set(mapping.values())) == 256 and mapping[32] == "Ġ"


def test_pretokenize_splits_like_gpt2():
    assert pretokenize("I'm  here") == ["I", "'m", " ", " here"]


@pytest.mark.parametrize("bad_ids, error, match", [
    ([50257], ValueError, "outside the vocabulary: ids run from 0 to 50256"),
    ([-1], ValueError, "outside the vocabulary"),
    ([1.5], TypeError, "token ids must be ints"),
    ("hello", TypeError, "sequence of ints"),
    (7, TypeError, "sequence of ints"),
])
def test_decode_bad_input(gpt2_bpe, bad_ids, error, match):
    with pytest.raises(error, match=match):
        gpt2_bpe.decode(bad_ids)


def test_decode_accepts_tensors(gpt2_bpe):
    assert gpt2_bpe.decode(torch.tensor([15496, 995])) == "Hello world"


@pytest.mark.parametrize("bad", [b"bytes", 3, None, ["a"]])
def test_encode_bad_input(gpt2_bpe, bad):
    with pytest.raises(TypeError, match="encode expects a str"):
        gpt2_bpe.encode(bad)


def test_encode_lone_surrogate(gpt2_bpe):
    with pytest.raises(ValueError, match="not valid Unicode"):
        gpt2_bpe.encode("a\ud800b")


@pytest.mark.parametrize("size", [256, 10, "512", 300.0])
def test_train_bad_vocab_size(size):
    with pytest.raises(ValueError, match="vocab_size must be an int >= 257"):
        BPETokenizer.train("some text", size)
