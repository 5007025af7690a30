"""Printed lines that fit the notebook's output area.

JupyterLab breaks an output line that is wider than its output area anywhere, even inside a word
(its style sheet says `word-break: break-all`). On a laptop screen 1280 pixels wide, with the file
browser open, that area holds 107 characters. So what the notebooks print keeps to 100 characters a
line, the width of their code (tests/test_browser.py checks every output, in JupyterLab too):
`print_wrapped` is `print` with each longer line wrapped at its spaces.
"""

from __future__ import annotations

WIDTH = 100  # characters: the notebooks' code is formatted to the same width
_OPENS_A_STRING = " [({,:="  # a quote after one of these (or first) opens a quoted string
_PHRASE = 24  # characters: a phrase that ends in a comma, at most this long, is kept whole


def _words(line: str) -> list[str]:
    """`line` split at its spaces, but for those inside a quoted string such as a token's repr
    (' world' stays whole; a string too long for a line is split at its own spaces) and those of
    a short phrase between commas."""
    words, start, quote, i = [], 0, None, 0
    while i < len(line):
        char = line[i]
        if quote:
            if char == "\\":
                i += 1  # an escaped character, a quote included
            elif char == quote:
                quote = None
        elif char in "'\"" and (i == 0 or line[i - 1] in _OPENS_A_STRING):
            quote = char
        elif char == " ":
            words.append(line[start:i])
            start = i + 1
        i += 1
    words.append(line[start:])
    words = [
        part for word in words for part in (word.split(" ") if len(word) > WIDTH // 2 else [word])
    ]
    # a short phrase of a list stays on one line ("head 5.3 (0.01),"); a longer one breaks anywhere
    phrases = [[words[0]]]
    for word in words[1:]:
        if phrases[-1][-1].endswith((",", ";")):
            phrases.append([word])
        else:
            phrases[-1].append(word)
    return [
        item
        for phrase in phrases
        for item in (phrase if len(" ".join(phrase)) > _PHRASE else [" ".join(phrase)])
    ]


def wrap_lines(text: str, indent: int | None = None, width: int = WIDTH) -> str:
    """`text` with every line longer than `width` wrapped at spaces (not those inside a quoted
    string, if it can), its continuation indented by `indent` spaces (by default its own leading
    spaces and 2 more). A word longer than a line (a path, say) stays whole, to copy whole."""
    lines = []
    for line in str(text).split("\n"):
        if len(line) <= width:
            lines.append(line)
            continue
        lead = len(line) - len(line.lstrip(" "))
        margin = " " * (lead + 2 if indent is None else indent)
        words = _words(line[lead:])
        current = line[:lead] + words[0]
        for word in words[1:]:
            if len(current) + 1 + len(word) > width and current.strip():
                kept = current.rstrip(" ")  # a run of spaces moves on: only one is the break
                lines.append(kept)
                current = margin + " " * (len(current) - len(kept)) + word
            else:
                current += " " + word
        lines.append(current)
    return "\n".join(lines)


def print_wrapped(*values, sep: str = " ", indent: int | None = None, **print_kwargs) -> None:
    """print(*values), with each line over 100 characters wrapped at spaces, its continuation
    indented by 2 spaces more than the line, or by `indent` (a label's width, to keep a column)."""
    print(wrap_lines(sep.join(str(value) for value in values), indent=indent), **print_kwargs)
