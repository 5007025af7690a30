"""utils/printing.py: lines over 100 characters wrapped at spaces, nothing else changed, a token's
repr and a path never cut."""

from __future__ import annotations

import string

from hypothesis import example, given, settings
from hypothesis import strategies as st

from utils.printing import WIDTH, print_wrapped, wrap_lines

_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " ,;:'\"[]()/\\.-é€", max_size=400)


_LINE = st.tuples(st.integers(0, 20), _TEXT).map(lambda t: " " * t[0] + t[1].lstrip(" "))


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, min_size=1, max_size=3), st.one_of(st.none(), st.integers(0, 40)))
def test_wrapping_only_breaks_lines_at_spaces(lines, indent):
    text = "\n".join(lines)
    wrapped = wrap_lines(text, indent=indent)
    assert wrapped.split() == text.split()  # the same words, in the same order
    for original in lines:
        if len(original) <= WIDTH:
            assert original in wrapped.split("\n")  # a line that fits is left as it is
    for line in wrapped.split("\n"):  # too long only where a single word is
        assert len(line) <= WIDTH or " " not in line.strip(), line


@settings(max_examples=300, deadline=None)
@given(_LINE)
@example("x" * 97 + "      " + "y" * 10)  # the break in a run of spaces
@example("'" + "a " * 60 + "      " + "b" * 10 + "'")  # in a quoted sample
def test_a_wrapped_line_can_be_put_back_together(line):
    """Each break takes the place of one space: a run of spaces (in a sample, say) is kept."""
    first, *rest = wrap_lines(line).split("\n")
    margin = len(line) - len(line.lstrip(" ")) + 2
    assert all(part.startswith(" " * margin) for part in rest)
    assert first + "".join(" " + part[margin:] for part in rest) == line


def test_a_long_line_is_wrapped_with_its_continuation_indented():
    line = "loss " + " ".join(f"{i}.000" for i in range(40))
    wrapped = wrap_lines(line).split("\n")
    assert len(wrapped) == 3 and all(len(part) <= WIDTH for part in wrapped)
    assert all(part.startswith("  ") and not part.startswith("   ") for part in wrapped[1:])
    assert " ".join(part.strip() for part in wrapped) == line
    column = wrap_lines("    label: " + line, indent=11).split("\n")
    assert all(part.startswith(" " * 11) and part[11] != " " for part in column[1:])


def test_a_token_in_quotes_a_short_phrase_and_a_path_stay_whole():
    tokens = str(["x"] * 20 + [" world", " of", " it"] + ["y"] * 10)
    assert all(part.count("'") % 2 == 0 for part in wrap_lines(tokens).split("\n")), (
        "a quoted token was split"
    )
    assert "' big token'" in wrap_lines("a" * 90 + " ' big token' and more"), (
        "a quoted string was split"
    )
    scores = "scores: " + ", ".join(f"head {i}.{i} (0.{i:02d})" for i in range(12))
    assert all(
        part.strip().startswith(("scores:", "head")) for part in wrap_lines(scores).split("\n")
    ), "a phrase between commas was split"
    path = "/home/learner/" + "a_long_folder_name/" * 8 + "step_000400.pt"
    assert (
        f"{path}:" in wrap_lines(f"sampling from {path}: step 400, validation loss 3.648").split()
    )


def test_print_wrapped_prints_like_print(capsys):
    print_wrapped("a", 1, None, sep="|", end="!\n")
    assert capsys.readouterr().out == "a|1|None!\n"
    print_wrapped("word " * 30)
    assert [len(line) <= WIDTH for line in capsys.readouterr().out.splitlines()] == [True, True]
