"""utils/bpe.py: GPT-2-exact encoding, lossless round trips, near-linear merging of long words,
incremental training, clear errors."""

import base64
import random
import string

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.bpe import BPETokenizer, bytes_to_unicode, pretokenize
from utils.resources import gpt2_vocab_and_merges, load_corpus, load_tokenizer

VARIED = [
    "",
    " ",
    "\n",
    "Hello world!",
    "  leading and   multiple   spaces  ",
    "trailing space ",
    "\t\ttabs\tand\nnew\n\n\nlines\r\n",
    "I'm sure they'd've said it's John's; we'll see. Y'ALL'RE",
    "don't DON'T Don't",
    "emoji 🤖🚀👩‍👩‍👧 and flags 🇬🇧",
    "accents: café naïve façade Ångström",
    "中文字符和日本語のテキスト한국어",
    "Ελληνικά и русский",
    "עברית عربي",
    "def f(x):\n    return x**2  # square\n\nclass A:\n\tpass\n",
    "1234567890 + 3.14159 = ? 1,000,000 1e-5 0x1F",
    "<|endoftext|>between<|endoftext|>docs",
    "<|endoftext|>",
    "<|endoftext",
    "a<|endoftext|>b <|endoftext|> c",
    "URLs: https://example.com/a?b=c&d=e#f",
    "!!!???...---___***",
    "\u200b zero width \u00a0 nbsp \u3000 ideographic space",
    "   \n   \n",
    "x" * 300,
    " ".join(["supercalifragilisticexpialidocious"] * 5),
    "\x00\x01\x7f control bytes",
]


@pytest.fixture(scope="module")
def gpt2_bpe():
    return BPETokenizer.from_gpt2()


@pytest.fixture(scope="module")
def hf_tokenizer():
    return load_tokenizer(local_only=True)


def test_gpt2_vocabulary(gpt2_bpe):
    assert (
        len(gpt2_bpe) == 50257 and gpt2_bpe.eot_id == 50256 and len(gpt2_bpe.merge_ranks) == 50000
    )


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
        _cache["small"] = BPETokenizer.train(
            "the cat sat on the mat. the dog sat on the log. " * 20, 300
        )
    return _cache["small"]


def test_first_merge_is_the_most_frequent_pair():
    bpe = BPETokenizer.train("ab ab ab ab cd", 258)
    assert bpe.id_to_token[256] == "ab"


def test_merges_never_cross_pretokens():
    bpe = BPETokenizer.train("a.b " * 200, 300)
    assert all(
        "." not in tok or tok.strip(".") == "" for tok in bpe.vocab if tok != "<|endoftext|>"
    )


def test_bytes_to_unicode_is_a_bijection():
    mapping = bytes_to_unicode()
    assert (
        sorted(mapping) == list(range(256))
        and len(set(mapping.values())) == 256
        and mapping[32] == "Ġ"
    )


def test_pretokenize_splits_like_gpt2():
    assert pretokenize("I'm  here") == ["I", "'m", " ", " here"]


# ---------------------------------------------- long words: ids and the number of steps


def _random_words(seed: int) -> list[str]:
    """Long pre-tokens of every kind: letters, digits, base64, symbols, unicode, whitespace runs,
    and text mixing them."""
    rng = random.Random(seed)
    unicode_chars = "éèüßøåñçЖжΩπ中文字日本語한국어🤖🚀👩‍👧\u200b\u00a0"
    kinds = [
        lambda n: "".join(rng.choices(string.ascii_letters, k=n)),
        lambda n: " " + "".join(rng.choices(string.ascii_lowercase, k=n)),
        lambda n: "".join(rng.choices(string.digits, k=n)),
        lambda n: base64.b64encode(rng.randbytes(n)).decode(),
        lambda n: "".join(rng.choices("!@#$%^&*()-_=+[]{};:,.<>/?|~`\\\"'", k=n)),
        lambda n: "".join(rng.choices(unicode_chars, k=n)),
        lambda n: "".join(rng.choices(" \t\n\r", k=n)),
        lambda n: "".join(
            rng.choices("aaab", k=n)
        ),  # long runs: overlapping pairs, merged left to right
        lambda n: "".join(rng.choices(string.printable + unicode_chars, k=n)),
    ]
    return [kind(rng.choice([1, 2, 3, 10, 100, 1000, 3000])) for _ in range(6) for kind in kinds]


@pytest.mark.parametrize("seed", range(3))
def test_long_random_words_match_hugging_face(seed, gpt2_bpe, hf_tokenizer):
    for text in _random_words(seed):
        assert gpt2_bpe.encode(text) == hf_tokenizer.encode(text), text[:80]
    word = "".join(
        random.Random(seed).choices(string.ascii_letters, k=20_000)
    )  # took 20 s with the quadratic loop
    assert gpt2_bpe.encode(word) == hf_tokenizer.encode(word)


def _merge_directly(word: list[str], ranks: dict) -> list[str]:
    """GPT-2's merge rule written directly (the reference the heap version must agree with)."""
    while len(word) > 1:
        rank, pair = min((ranks.get(pair, float("inf")), pair) for pair in zip(word, word[1:]))
        if rank == float("inf"):
            break
        merged, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                merged.append(word[i] + word[i + 1])
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = merged
    return word


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abct .é")), max_size=300))
def test_merging_agrees_with_the_direct_rule_on_a_dense_trained_vocabulary(text):
    """A small alphabet trained to many merges: long chains of merges and overlapping pairs in every
    word."""
    bpe = _trained_dense()
    for piece in pretokenize(text):
        expected = _merge_directly(
            [bpe.byte_encoder[b] for b in piece.encode("utf-8")], bpe.merge_ranks
        )
        assert bpe._bpe(piece) == [bpe.vocab[tok] for tok in expected]


def _trained_dense():
    if "dense" not in _cache:
        _cache["dense"] = BPETokenizer.train(
            "".join(random.Random(1).choices("abct .é", k=20_000)), 600
        )
    return _cache["dense"]


class CountingRanks(dict):
    """merge_ranks that counts its lookups: the merge loop's work, without a clock."""

    lookups = 0

    def __getitem__(self, key):
        self.lookups += 1
        return super().__getitem__(key)

    def __contains__(self, key):
        self.lookups += 1
        return super().__contains__(key)

    def get(self, key, default=None):
        self.lookups += 1
        return super().get(key, default)


def _lookups_to_encode(tokenizer: BPETokenizer, text: str) -> int:
    tokenizer._cache.clear()
    tokenizer.merge_ranks = counting = CountingRanks(tokenizer.merge_ranks)
    try:
        tokenizer.encode(text)
    finally:
        tokenizer.merge_ranks = dict(counting)
    return counting.lookups


class QuadraticBPE(BPETokenizer):  # the round-by-round loop: rescans the whole word for every merge
    def _bpe(self, piece):
        return [
            self.vocab[tok]
            for tok in _merge_directly(
                [self.byte_encoder[b] for b in piece.encode("utf-8")], self.merge_ranks
            )
        ]


@pytest.mark.parametrize("n_chars", [2_000, 8_000, 32_000])
def test_merging_a_long_word_takes_linear_work(n_chars, gpt2_bpe):
    """Each merge pushes at most two pairs and each pop checks one, so the rank lookups stay within
    a few per byte."""
    word = "".join(random.Random(n_chars).choices(string.ascii_letters, k=n_chars))
    assert _lookups_to_encode(gpt2_bpe, word) <= 8 * n_chars


def test_the_lookup_count_catches_a_quadratic_merge_loop():
    word = "".join(random.Random(0).choices(string.ascii_letters, k=2_000))
    assert _lookups_to_encode(QuadraticBPE(*gpt2_vocab_and_merges()), word) > 8 * 2_000


# ---------------------------------------------- bad input: a clear error at the public entry point


def _small_vocab_and_merges(drop: str | None = None):
    bpe = _trained_small()
    vocab = {tok: i for tok, i in bpe.vocab.items() if tok != drop}
    return vocab, sorted(bpe.merge_ranks, key=bpe.merge_ranks.get)


BAD_CALLS = [  # id, call (given the GPT-2 tokenizer), error, what the message must say
    (
        "decode-bools",
        lambda t: t.decode([True, False]),
        TypeError,
        r"token ids must be ints, got ids\[0\] = True \(bool\)",
    ),
    (
        "decode-numpy-bool",
        lambda t: t.decode([np.True_]),
        TypeError,
        r"token ids must be ints, got ids\[0\] = .*True",
    ),
    (
        "decode-bool-tensor",
        lambda t: t.decode(torch.tensor([True, False])),
        TypeError,
        r"ids\[0\] = True \(bool\)",
    ),
    (
        "decode-2d-tensor",
        lambda t: t.decode(torch.zeros(2, 3, dtype=torch.long)),
        ValueError,
        r"decode: ids must be one sequence of token ids \(1-D\), "
        r"got a Tensor of shape \(2, 3\).*each row",
    ),
    (
        "decode-2d-array",
        lambda t: t.decode(np.zeros((2, 3), dtype=np.int64)),
        ValueError,
        r"ndarray of shape \(2, 3\)",
    ),
    ("decode-0d-tensor", lambda t: t.decode(torch.tensor(5)), ValueError, r"Tensor of shape \(\)"),
    (
        "decode-nested-list",
        lambda t: t.decode([[15496, 995]]),
        TypeError,
        r"ids\[0\] = \[15496, 995\] \(list\)",
    ),
    (
        "decode-too-big",
        lambda t: t.decode([15496, 50257]),
        ValueError,
        r"ids\[1\] = 50257 is not a token id of this vocabulary: "
        r"its 50,257 ids run from 0 to 50256$",
    ),
    (
        "decode-negative",
        lambda t: t.decode([-1]),
        ValueError,
        r"ids\[0\] = -1 is not a token id of this vocabulary",
    ),
    (
        "decode-float",
        lambda t: t.decode([1.5]),
        TypeError,
        r"token ids must be ints, got ids\[0\] = 1.5 \(float\)",
    ),
    ("decode-str", lambda t: t.decode("hello"), TypeError, "sequence of ints"),
    ("decode-int", lambda t: t.decode(7), TypeError, "sequence of ints"),
    ("encode-bytes", lambda t: t.encode(b"bytes"), TypeError, "encode expects a str, got bytes"),
    ("encode-int", lambda t: t.encode(3), TypeError, "encode expects a str, got int"),
    ("encode-none", lambda t: t.encode(None), TypeError, "encode expects a str, got NoneType"),
    ("encode-list", lambda t: t.encode(["a"]), TypeError, "encode expects a str, got list"),
    ("encode-lone-surrogate", lambda t: t.encode("a\ud800b"), ValueError, "not valid Unicode"),
    (
        "init-no-endoftext",
        lambda t: BPETokenizer(*_small_vocab_and_merges(drop="<|endoftext|>")),
        ValueError,
        r"vocab lacks \['<\|endoftext\|>'\].*special token",
    ),
    (
        "init-no-byte",
        lambda t: BPETokenizer(*_small_vocab_and_merges(drop="Ġ")),
        ValueError,
        r"vocab lacks \['Ġ'\].*256 byte tokens",
    ),
    (
        "init-vocab-list",
        lambda t: BPETokenizer(["a", "b"], []),
        TypeError,
        "vocab must be a dict from token string to id, got list",
    ),
    (
        "init-merge-triple",
        lambda t: BPETokenizer(_small_vocab_and_merges()[0], [("t", "h", "e")]),
        ValueError,
        r"merges\[0\] = \('t', 'h', 'e'\) must be a pair of token strings",
    ),
    (
        "init-merge-unknown",
        lambda t: BPETokenizer(_small_vocab_and_merges()[0], [("q", "z")]),
        ValueError,
        "whose join is in vocab",
    ),
    (
        "train-text-bytes",
        lambda t: BPETokenizer.train(b"some text", 300),
        TypeError,
        "BPETokenizer.train: text must be a str, got bytes",
    ),
    (
        "train-text-none",
        lambda t: BPETokenizer.train(None, 300),
        TypeError,
        "text must be a str, got NoneType",
    ),
    (
        "train-size-bool",
        lambda t: BPETokenizer.train("some text", True),
        TypeError,
        r"vocab_size must be an int, got True \(bool\)",
    ),
    (
        "train-size-float",
        lambda t: BPETokenizer.train("some text", 300.0),
        TypeError,
        r"vocab_size must be an int, got 300.0 \(float\)",
    ),
    (
        "train-size-numpy-float",
        lambda t: BPETokenizer.train("some text", np.float64(300)),
        TypeError,
        r"vocab_size must be an int",
    ),
    (
        "train-size-str",
        lambda t: BPETokenizer.train("some text", "512"),
        TypeError,
        r"vocab_size must be an int, got '512' \(str\)",
    ),
    (
        "train-size-256",
        lambda t: BPETokenizer.train("some text", 256),
        ValueError,
        r"vocab_size must be an int >= 257 \(256 bytes \+ <\|endoftext\|>\), got 256",
    ),
    (
        "train-size-numpy-10",
        lambda t: BPETokenizer.train("some text", np.int64(10)),
        ValueError,
        r">= 257 .*got 10",
    ),
]


@pytest.mark.parametrize(
    "call, error, match", [pytest.param(*row[1:], id=row[0]) for row in BAD_CALLS]
)
def test_bad_input_gets_a_clear_error(call, error, match, gpt2_bpe):
    with pytest.raises(error, match=match):
        call(gpt2_bpe)


GOOD_CALLS = [  # id, call (given the GPT-2 tokenizer), expected result
    ("decode-list", lambda t: t.decode([15496, 995]), "Hello world"),
    ("decode-tensor", lambda t: t.decode(torch.tensor([15496, 995])), "Hello world"),
    (
        "decode-int32-tensor",
        lambda t: t.decode(torch.tensor([15496, 995], dtype=torch.int32)),
        "Hello world",
    ),
    ("decode-numpy-array", lambda t: t.decode(np.array([15496, 995])), "Hello world"),
    ("decode-numpy-ints", lambda t: t.decode([np.int64(15496), np.int32(995)]), "Hello world"),
    ("decode-tuple", lambda t: t.decode((15496, 995)), "Hello world"),
    ("decode-empty", lambda t: t.decode([]), ""),
    (
        "train-numpy-size",
        lambda t: len(
            BPETokenizer.train(
                "the cat sat on the mat. the dog sat on the log. " * 20, np.int64(270)
            )
        ),
        270,
    ),
    (
        "train-numpy-int32-size",
        lambda t: len(BPETokenizer.train("the cat sat on the mat. " * 20, np.int32(258))),
        258,
    ),
]


@pytest.mark.parametrize(
    "call, expected", [pytest.param(*row[1:], id=row[0]) for row in GOOD_CALLS]
)
def test_accepted_input(call, expected, gpt2_bpe):
    assert call(gpt2_bpe) == expected
