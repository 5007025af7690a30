"""Notebook 01's checks: merge_word, train_merges and the BPETokenizer, against the reference in
utils/bpe.py and GPT-2's own ids."""

from __future__ import annotations

import inspect
import numbers
import types
from collections import Counter

from utils.printing import print_wrapped
from utils.checks.core import (
    CheckUsageError,
    is_yours,
    call_learner,
    fail,
    known_mistake,
    learner_facing,
    recognise,
)

# --------------------------------------------------------------------------- known mistakes

TIE_BY_DICT_ORDER = known_mistake(
    "merges_tie_by_dict_order",
    "train_merges",
    "a tie. Both pairs occur {count} times at this point; ties go to the smallest ids ({want} "
    "before {got}), which the heap of (-count, pair) gives for free, and dict order does not.",
)
MERGES_WRONG_MERGE_WORD = known_mistake(
    "merges_wrong_merge_word",
    "train_merges",
    "train_merges calls your merge_word, and it is wrong: {call} returns {got}, expected "
    "{expected} ({what}). Fix merge_word first (checks.check_merge_word(merge_word)), then run "
    "this check again.",
)
MERGES_ACROSS_DOCUMENTS = known_mistake(
    "merges_across_documents",
    "train_merges",
    "pairs are counted across the ends of documents: these are the merges of the text with "
    "<|endoftext|> removed, where the documents 'yes' run together into 'yesyes'. Split the "
    "text on <|endoftext|> first and pre-tokenize each document on its own.",
)
MERGES_PAIR_NOT_IN_WORDS_WITH = known_mistake(
    "merges_pair_not_in_words_with",
    "train_merges",
    "words_with has no entry for the pair being merged. Either a stale heap entry was merged: skip "
    "an entry whose count is no longer pair_counts[pair] (the pair was merged, or its count "
    "changed, after it was pushed); or the pairs of a merged word were not recorded: "
    "words_with[new].add(w) for every pair of the new word.",
    raises=KeyError,
    says=", ",  # the key is a pair of ids, (a, b); a byte's or a character's key has no comma
)
BPE_NO_MERGE_KEPT = known_mistake(
    "bpe_no_merge_kept",
    "BPETokenizer._bpe",
    "these are the ids of the text's single bytes: no merge reached the result. The lines after "
    "your code read `word`: leave the merged tokens in it (word = [t for t in symbols if t], "
    "when you merged in another list).",
)
DECODE_PER_TOKEN = known_mistake(
    "decode_per_token",
    "BPETokenizer",
    "each token's bytes are decoded as UTF-8 on their own, but one character can span two tokens "
    "(an emoji is 4 bytes). Join the bytes of all the tokens, then decode once, "
    "with errors='replace' as GPT-2 does.",
    raises=UnicodeDecodeError,
)
DECODE_STRICT = known_mistake(
    "decode_strict",
    "BPETokenizer",
    "the joined bytes are decoded strictly, so ids that end inside a character (the first of an "
    "emoji's two tokens, which a model can sample) raise UnicodeDecodeError. Decode with "
    "errors='replace', as GPT-2 does: the broken character becomes '\\ufffd'.",
    raises=UnicodeDecodeError,
)


_MERGE_WORD_CASES = [  # word, pair, new_id, expected, what the case tests
    ([1, 2, 3, 1, 2], (1, 2), 9, [9, 3, 9], "every occurrence is replaced"),
    (
        [11, 2, 1, 3, 21, 2, 1, 2],
        (1, 2),
        300,
        [11, 2, 1, 3, 21, 2, 300],
        "a pair matches only when both ids are equal: (11, 2), (21, 2) and (1, 3) are not (1, 2)",
    ),
    (
        [1, 1, 1],
        (1, 1),
        9,
        [9, 1],
        "overlapping occurrences: left to right, and each id takes part in one merge only",
    ),
    (
        [1, 1, 1, 1],
        (1, 1),
        9,
        [9, 9],
        "overlapping occurrences: left to right, and each id takes part in one merge only",
    ),
    ([2, 1], (1, 2), 9, [2, 1], "order matters: (2, 1) is not the pair (1, 2)"),
    ([3, 1], (1, 2), 9, [3, 1], "a pair's first id at the end of the word is not a match"),
    ([7], (1, 2), 9, [7], "a word of one id has no pairs"),
    ([], (1, 2), 9, [], "an empty word"),
]


def _merge_word_mistake(merge_word) -> dict | None:
    """The first of check_merge_word's cases that `merge_word` gets wrong (raising, or changing its
    input, counts as wrong), as facts for MERGES_WRONG_MERGE_WORD; None if it gets them all
    right."""
    for word, pair, new_id, expected, what in _MERGE_WORD_CASES:
        given = list(word)
        try:
            got = repr(merge_word(given, pair, new_id))
        except NotImplementedError:  # the exercise stub: train_merges, which ran, does not call it
            return None
        except Exception as err:
            got = f"an error ({type(err).__name__}: {err})"
        if given != word:
            got, what = f"{got}, and changes its input to {given}", "build a new list"
        elif got == repr(expected):
            continue
        call = f"merge_word({word}, {pair}, {new_id})"
        return dict(call=call, got=got, expected=expected, what=what)
    return None


def _learners_merge_word(fn, depth: int = 3):
    """The merge_word that the learner's train_merges calls, when it is not the reference's: the
    one of its module (in the notebook, the learner's own), reached directly or through a helper
    of theirs, or given as a default argument or from a closure; else None."""
    from utils.bpe import merge_word as reference

    code = getattr(fn, "__code__", None)
    if code is None or depth == 0:
        return None
    names, scope = code.co_names, getattr(fn, "__globals__", {})
    merge_word = scope.get("merge_word") if "merge_word" in names else None
    if callable(merge_word) and merge_word is not reference:
        return merge_word
    given = [*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()]
    given += [cell.cell_contents for cell in fn.__closure__ or () if _filled(cell)]
    for value in given:  # merge=merge_word as a default, or a function closed over
        if _yours(value) and _takes_three(value) and value is not reference:
            return value
    for name in names:  # a helper of yours that calls it
        helper = scope.get(name)
        if _yours(helper) and helper is not fn:
            found = _learners_merge_word(helper, depth - 1)
            if found is not None:
                return found
    return None


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # a closure's variable not yet assigned
        return False
    return True


def _yours(value) -> bool:
    """A Python function of the learner's: written in a cell, not in this project's modules, the
    standard library or an installed package."""
    return isinstance(value, types.FunctionType) and is_yours(value.__code__.co_filename)


def _takes_three(fn) -> bool:
    try:
        inspect.signature(fn).bind([1, 2], (1, 2), 9)
    except (TypeError, ValueError):
        return False
    return True


def _fail_train_merges(fn, lines, mistake=None, things_to_check=None, **facts):
    """check_train_merges' failure; when train_merges calls a merge_word that is wrong, that is
    named as the cause instead (a wrong merge changes the words, and so every count after it)."""
    merge_word = _learners_merge_word(fn)
    wrong = _merge_word_mistake(merge_word) if merge_word is not None else None
    if wrong is not None:
        fail(lines, MERGES_WRONG_MERGE_WORD, **wrong)
    fail(lines, mistake, things_to_check, **facts)


# --------------------------------------------------------------------------- the checks


@learner_facing
def check_merge_word(fn) -> None:
    """`fn(word, pair, new_id)` must replace each occurrence of `pair`, left to right, without
    changing `word`."""
    cases = _MERGE_WORD_CASES
    for original, pair, new_id, expected, what in cases:
        word = list(original)  # a copy: the cases stay as they are if fn changes its input
        label = f"merge_word({original}, {pair}, {new_id})"
        got = call_learner(fn, word, pair, new_id, what=label)
        if word != original:
            fail(
                f"{label} changed its input to {word}. Build and return a new list: "
                "train_merges still needs the old word."
            )
        if isinstance(got, (tuple, range)) and list(got) == expected:
            fail(
                f"{label} returned the {type(got).__name__} {got!r}: the right ids, but a word is "
                f"a list of ids (train_merges stores and compares lists); return a list, {expected}"
            )
        if not isinstance(got, list) or got != expected:
            fail(f"{label} returned {got!r}, expected {expected} ({what}).")
    print_wrapped(
        f"merge_word passed: {len(cases)} cases, including overlapping pairs and the end of a word"
    )


_MERGE_TEXT = (
    "the cat sat on the mat. the cat ate the rat, then the bat sat by the hat!\n" * 3
    + "<|endoftext|>"
    + "these thin threads throw three thousand thorns; thither and thence.\n" * 2
    + "<|endoftext|>"
    + "naïve café déjà vu 🤖🤖 1234 123 12 aaaa aaa aa\n\tindented    spaces    here\n" * 2
    + "<|endoftext|>"
    + "yes<|endoftext|>" * 8  # short documents: merged across their ends, "yesyes" pairs appear
)


@learner_facing
def check_train_merges(fn, n_merges: int = 80) -> None:
    """`fn(text, n_merges)` must learn the same merges, in the same order, as the reference
    trainer."""
    from utils.bpe import END_OF_TEXT, train_merges as reference

    if isinstance(n_merges, bool) or not isinstance(n_merges, numbers.Integral) or n_merges < 10:
        raise CheckUsageError(  # with few merges, most wrong trainers would pass
            f"check_train_merges: n_merges must be an int of at least 10, got {n_merges!r}"
        )
    expected_tokens, expected = reference(_MERGE_TEXT, n_merges)
    result = call_learner(
        fn,
        _MERGE_TEXT,
        n_merges,
        what=f"train_merges(text, {n_merges})",
        known=[MERGES_PAIR_NOT_IN_WORDS_WITH],
    )
    if not (isinstance(result, tuple) and len(result) == 2):
        _fail_train_merges(
            fn, f"train_merges must return (tokens, merges), got {type(result).__name__}"
        )
    tokens, merges = result
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        _fail_train_merges(
            fn,
            "train_merges must return (tokens, merges): tokens first, a list of strings (the 256 "
            f"byte tokens, then one per merge); got a {type(tokens).__name__} first",
        )
    merges = [tuple(pair) for pair in merges]
    if len(tokens) != 256 + len(merges) or any(
        not all(isinstance(i, int) and 0 <= i < len(tokens) for i in pair) for pair in merges
    ):
        _fail_train_merges(
            fn,
            f"train_merges returned {len(tokens)} tokens for {len(merges)} merges: tokens must "
            "hold the 256 byte tokens, then the new token of each merge (tokens.append), so "
            "that every merge's ids are ids of tokens",
        )
    for k, (got, want) in enumerate(zip(merges, expected)):
        if got != want:
            if merges == reference(_MERGE_TEXT.replace(END_OF_TEXT, ""), n_merges)[1]:
                _fail_train_merges(
                    fn,
                    f"train_merges: merge {k} differs ({_matching(k)}).",
                    MERGES_ACROSS_DOCUMENTS,
                )
            counts = _pair_counts_after(expected[:k])
            header = (
                f"train_merges: merge {k} is {tokens[got[0]]!r} + {tokens[got[1]]!r}, "
                f"expected {expected_tokens[want[0]]!r} + {expected_tokens[want[1]]!r} "
                f"({_matching(k)})."
            )
            count = counts.get(want, 0)
            if counts.get(got, 0) == count > 0:  # equally frequent: a tie, or the heap lost it
                tied = sum(n == count for n in counts.values())  # pairs a tie-break chooses from
                if want in merges[k + 1 : k + tied]:  # merged soon after: broken by dict order
                    _fail_train_merges(
                        fn, header, TIE_BY_DICT_ORDER, count=count, want=want, got=got
                    )
                later = merges.index(want) if want in merges else None
                header = [
                    header,
                    f"  Both pairs occur {count} times at this point, but yours merges the "
                    "expected one "
                    + (f"only at merge {later}" if later is not None else "at no merge")
                    + ": it was missing from the heap.",
                ]
            else:
                header = [
                    header,
                    f"  At this point the expected pair occurs {count} times and "
                    f"yours {counts.get(got, 0)}.",
                ]
            _fail_train_merges(
                fn,
                header,
                None,
                "each affected word's count is subtracted from every pair of the old word and "
                "added to every pair of the new word; words_with records the new pairs; "
                "every changed pair that still occurs, those whose count went down too, is pushed "
                "back on the heap.",
            )
    if len(merges) != len(expected):
        _fail_train_merges(
            fn,
            f"train_merges learned {len(merges)} merges, expected {len(expected)} "
            f"({_matching(min(len(merges), len(expected)))}). Stopping early usually means "
            "changed pairs were not pushed back on the heap.",
        )
    if len(tokens) != 256 + len(merges) or any(
        tokens[256 + k] != tokens[a] + tokens[b] for k, (a, b) in enumerate(merges)
    ):
        _fail_train_merges(
            fn,
            "train_merges: tokens must hold the 256 byte tokens, then one new token per merge, "
            "tokens[a] + tokens[b] for merge (a, b), appended in order.",
        )
    print_wrapped(
        f"train_merges passed: the same {len(merges)} merges, in the same order, "
        "as the reference trainer"
    )


def _matching(k: int) -> str:
    return (
        "none match before it"
        if k == 0
        else "the first merge matches"
        if k == 1
        else f"the first {k} merges match"
    )


def _pair_counts_after(merges) -> dict:
    """How often each pair of token ids occurs in the check's text once `merges` have been applied
    (the reference's way)."""
    from utils.bpe import END_OF_TEXT, bytes_to_unicode, merge_word, pretokenize

    byte_id = {byte: i for i, byte in enumerate(bytes_to_unicode())}
    words = Counter(word for chunk in _MERGE_TEXT.split(END_OF_TEXT) for word in pretokenize(chunk))
    counts = Counter()
    for word, n in words.items():
        ids = [byte_id[b] for b in word.encode("utf-8")]
        for k, pair in enumerate(merges):
            ids = merge_word(ids, pair, 256 + k)
        for pair in zip(ids, ids[1:]):
            counts[pair] += n
    return counts


_TOKENIZER_TEXTS = [
    "Hello world!",
    "  leading and   multiple   spaces  ",
    "tabs\tand\nnew\n\n\nlines\r\n",
    "I'm sure they'd've said it's John's",
    "emoji 🤖🚀 and accents: café naïve",
    "中文字符和日本語のテキスト",
    "def f(x):\n    return x**2  # square\n",
    "1234567890 + 3.14159 = ?",
    "<|endoftext|>between<|endoftext|>docs",
    "antidisestablishmentarianism unbelievably",
    "aaa hmmm... wooo!!! ----- ===",  # runs of one character: equal ranks, the leftmost first
]


def _byte_ids(reference, text) -> list[int]:
    """What encode gives when _bpe merges nothing (BPE_NO_MERGE_KEPT): one id per byte, and the
    special tokens."""
    ids = []
    for chunk in reference._special_split.split(text):
        if chunk in reference.special_tokens:
            ids.append(reference.special_tokens[chunk])
        else:
            ids += [reference.vocab[reference.byte_encoder[b]] for b in chunk.encode("utf-8")]
    return ids


def _decode_per_token(reference, ids) -> str:
    """What decode gives when it decodes each token's bytes on its own (DECODE_PER_TOKEN), replacing
    broken characters."""
    return "".join(
        bytes(reference.byte_decoder[c] for c in reference.id_to_token[i]).decode(
            "utf-8", errors="replace"
        )
        for i in ids
    )


@learner_facing
def check_bpe_tokenizer(cls) -> None:
    """`cls(vocab, merges)` loaded with GPT-2's vocabulary and merges must encode and decode exactly
    as GPT-2 does."""
    from utils.bpe import BPETokenizer as Reference
    from utils.resources import gpt2_vocab_and_merges

    vocab, merges = gpt2_vocab_and_merges()
    reference = Reference(vocab, merges)
    name = getattr(cls, "__name__", "BPETokenizer")
    tokenizer = call_learner(cls, vocab, merges, what=f"{name}(vocab, merges)")
    if not (
        callable(getattr(tokenizer, "encode", None))
        and callable(getattr(tokenizer, "decode", None))
    ):
        fail(
            f"{name}(vocab, merges) returned {type(tokenizer).__name__}, not a tokenizer with "
            f"encode and decode: pass the class itself, BPETokenizer"
        )
    show = lambda ids: [reference.id_to_token.get(i, i) for i in ids]  # noqa: E731
    for text in _TOKENIZER_TEXTS:
        expected = reference.encode(text)
        got = call_learner(tokenizer.encode, text, what=f"encode({text!r})")
        if list(got) != expected:
            unmerged = list(got) == _byte_ids(reference, text) != expected
            fail(
                f"encode({text!r}):\n  got      {show(got)}\n  expected {show(expected)}",
                BPE_NO_MERGE_KEPT if unmerged else None,
                "in _bpe, each round merges the adjacent pair with the LOWEST "
                "rank in merge_ranks (not the first mergeable pair, nor the most frequent), "
                "replaces all its occurrences left to right, and repeats until no pair is a "
                "merge.",
            )
        decoded = call_learner(
            tokenizer.decode, expected, what=f"decode(encode({text!r}))", known=[DECODE_PER_TOKEN]
        )
        if decoded != text:
            fail(
                f"decode(encode({text!r})) gave {decoded!r}, not the text itself.",
                recognise(
                    decoded,
                    [DECODE_PER_TOKEN],
                    lambda m: _decode_per_token(reference, expected),
                    lambda a, b: a == b,
                ),
                "map each character of each token back to its byte with byte_decoder, "
                "join all the bytes, then decode UTF-8 once (a character may span two tokens).",
            )
    robot = reference.encode("🤖")
    half = call_learner(
        tokenizer.decode,
        robot[:1],
        what="decode(half of an emoji's tokens)",
        known=[DECODE_STRICT],  # the whole texts decoded: the bytes are joined
    )
    if half != reference.decode(robot[:1]):
        fail(
            f"decoding half of an emoji's bytes gave {half!r}, "
            f"expected {reference.decode(robot[:1])!r}: decode the joined bytes with "
            "errors='replace', as GPT-2 does."
        )
    print_wrapped(
        f"{cls.__name__} passed: GPT-2's ids on {len(_TOKENIZER_TEXTS)} tricky strings, "
        "and decode(encode(s)) == s for each"
    )
