"""What the tests that read a kernel's outputs share: its text without the terminal's colour codes
(IPython colours every traceback)."""

import re

_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def without_colours(text: str) -> str:
    return _ESCAPE.sub("", text)
