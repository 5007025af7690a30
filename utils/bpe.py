"""GENERATED from notebooks/01_tokenisation.ipynb by `make export` -- do not edit here.

Edit the notebook's `#| export` cells instead, then run `make export`."""

from __future__ import annotations

# --- notebooks/01_tokenisation.ipynb, code cell 8

import heapq
import time
from collections import Counter, defaultdict

import regex

from utils.resources import END_OF_TEXT, gpt2_vocab_and_merges  # GPT-2's files, on disk
from utils.validation import (
    check_bpe_parts,
    require_id_list,
    require_int,
    require_merge_args,
    require_special_token,
    require_text,
    require_vocab_size,
)

# GPT-2's pre-tokenisation regex: contractions, optionally-space-prefixed letters / numbers /
# other, then whitespace.
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
_SPLITTER = regex.compile(GPT2_SPLIT_PATTERN)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte (0-255) to a printable character. Printable bytes map to
    themselves; the rest (space, newline, control bytes...) are shifted to characters from 256
    upward (space -> 'Ġ')."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = printable[:]
    shift = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + shift)
            shift += 1
    return dict(zip(printable, map(chr, chars)))


def pretokenize(text: str) -> list[str]:
    """Split text the way GPT-2 does before any merging."""
    return _SPLITTER.findall(require_text("pretokenize expects", text))


# --- notebooks/01_tokenisation.ipynb, code cell 10
def merge_word(word: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `word`, left to right, by `new_id` (so [1, 1, 1] with
    pair (1, 1) gives [new_id, 1])."""
    require_merge_args(word, pair, new_id)  # a str word, or a pair of three: one clear line
    merged, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


# --- notebooks/01_tokenisation.ipynb, code cell 12
def train_merges(text: str, n_merges: int) -> tuple[list[str], list[tuple[int, int]]]:
    """Learn up to `n_merges` BPE merges from `text`.

    Returns the token strings (256 byte tokens, then one per merge) and the merges as pairs of
    token ids.
    Ties between equally frequent pairs go to the smallest ids, so training is deterministic.
    """
    text = require_text("train_merges: text must be", text)
    n_merges = require_int("n_merges", n_merges, minimum=0)
    byte_encoder = bytes_to_unicode()
    tokens = list(
        byte_encoder.values()
    )  # id -> token string; ids 0..255 are bytes, in GPT-2's order
    byte_id = {byte: i for i, byte in enumerate(byte_encoder)}

    word_counts = Counter()
    for chunk in text.split(END_OF_TEXT):  # never merge across document boundaries
        word_counts.update(pretokenize(chunk))
    words = [[byte_id[b] for b in word.encode("utf-8")] for word in word_counts]
    counts = list(word_counts.values())

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    words_with: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += counts[w]
            words_with[pair].add(w)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    while len(merges) < n_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count or neg_count == 0:
            continue  # a stale heap entry: this pair's count changed since it was pushed
        new_id = len(tokens)
        tokens.append(tokens[pair[0]] + tokens[pair[1]])
        merges.append(pair)
        touched = set()
        for w in words_with.pop(pair):
            word, count = words[w], counts[w]
            for old in zip(word, word[1:]):
                pair_counts[old] -= count
                touched.add(old)
            word = words[w] = merge_word(word, pair, new_id)
            for new in zip(word, word[1:]):
                pair_counts[new] += count
                words_with[new].add(w)
                touched.add(new)
        pair_counts.pop(pair, None)
        for p in touched:
            if pair_counts.get(p, 0) > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
    return tokens, merges


# --- notebooks/01_tokenisation.ipynb, code cell 14
class BPETokenizer:
    """Byte-level BPE, GPT-2 style. `vocab` maps token strings (in bytes_to_unicode form) to ids;
    `merges` are pairs of token strings in the order they were learned."""

    def __init__(self, vocab: dict[str, int], merges: list, special_tokens=(END_OF_TEXT,)):
        check_bpe_parts(vocab, merges, special_tokens, bytes_to_unicode().values())
        self.vocab = {tok: int(i) for tok, i in vocab.items()}  # numpy's ids as Python ints
        self.id_to_token = {i: tok for tok, i in self.vocab.items()}
        self.merge_ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {char: byte for byte, char in self.byte_encoder.items()}
        self.special_tokens = {tok: self.vocab[tok] for tok in special_tokens}
        longest_first = sorted(
            special_tokens, key=len, reverse=True
        )  # "<|end" after "<|endoftext|>"
        specials = "|".join(map(regex.escape, longest_first))
        self._special_split = regex.compile(f"({specials})") if special_tokens else None
        self._cache: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def eot_id(self) -> int:
        require_special_token(END_OF_TEXT, self.special_tokens)  # one clear error if not there
        return self.special_tokens[END_OF_TEXT]

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "BPETokenizer":
        """Train on `text` until the vocabulary (256 bytes + merges + <|endoftext|>) has
        `vocab_size` tokens."""
        text = require_text("BPETokenizer.train: text must be", text)
        vocab_size = require_vocab_size(vocab_size)  # at least 256 bytes and <|endoftext|>
        start = time.perf_counter()
        tokens, merges = train_merges(text, vocab_size - 257)
        seconds = time.perf_counter() - start
        if len(merges) < vocab_size - 257:  # every word of the text is one token already
            size = len(merges) + 257
            print(f"the text has no pair left to merge: {size:,} tokens, not {vocab_size:,}")
        vocab = {tok: i for i, tok in enumerate(tokens)}
        if len(vocab) != len(tokens):
            raise RuntimeError("two merges produced the same token string")
        vocab[END_OF_TEXT] = len(vocab)
        tokenizer = cls(vocab, [(tokens[a], tokens[b]) for a, b in merges])
        tokenizer.train_seconds = seconds
        return tokenizer

    @classmethod
    def from_gpt2(cls) -> "BPETokenizer":
        """GPT-2's own 50,257-token vocabulary and 50,000 merges."""
        return cls(*gpt2_vocab_and_merges())

    def _bpe(self, piece: str) -> list[int]:
        """Merge the byte characters of one pre-token, lowest-rank pair first (leftmost first
        among equals), as GPT-2 does."""
        if piece in self._cache:
            return self._cache[piece]
        word = [self.byte_encoder[b] for b in piece.encode("utf-8")]
        ranks, n = self.merge_ranks, len(word)
        symbols = word[:]  # symbols[i]: the token at byte i ("" once joined to its left)
        nxt = list(range(1, n + 1))  # nxt[i]: where the next token starts (n: none)
        prv = list(range(-1, n - 1))  # prv[i]: where the previous token starts (-1: none)
        heap = [(ranks[pair], i) for i, pair in enumerate(zip(word, word[1:])) if pair in ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = nxt[i]
            if not symbols[i] or j == n or ranks.get((symbols[i], symbols[j])) != rank:
                continue  # a stale entry: the pair at i has changed since it was pushed
            symbols[i], symbols[j] = symbols[i] + symbols[j], ""
            nxt[i] = nxt[j]
            if nxt[i] < n:
                prv[nxt[i]] = i
            for left in (prv[i], i):  # the joined token's new pairs, left and right
                if left >= 0 and nxt[left] < n and (symbols[left], symbols[nxt[left]]) in ranks:
                    heapq.heappush(heap, (ranks[symbols[left], symbols[nxt[left]]], left))
        word = [token for token in symbols if token]
        ids = [self.vocab[tok] for tok in word]
        if len(self._cache) < 100_000:
            self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Text to token ids. `<|endoftext|>` in the text becomes the special token."""
        text = require_text("encode expects", text)  # not bytes, no lone surrogates
        ids: list[int] = []
        chunks = self._special_split.split(text) if self._special_split else [text]
        for chunk in chunks:
            if chunk in self.special_tokens:
                ids.append(self.special_tokens[chunk])
            elif chunk:
                for piece in pretokenize(chunk):
                    ids.extend(self._bpe(piece))
        return ids

    def decode(self, ids) -> str:
        """Token ids (a list of ints, or a 1-D tensor or array) back to text; invalid UTF-8
        becomes '\ufffd', as in GPT-2."""
        data = bytearray()
        for i in require_id_list(ids, self.id_to_token):  # ints in the vocabulary, in order
            data.extend(self.byte_decoder[char] for char in self.id_to_token[i])
        return data.decode("utf-8", errors="replace")


# written by `make export`; sha256 of the text above: c59a164d6150b6a7
