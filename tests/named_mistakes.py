"""What the tests of every notebook's checks assert about a failure: it names the known mistake
made, and no other."""

import re

import pytest

from utils.checks import MISTAKES


def advice_pattern(mistake: str) -> str:
    """The mistake's advice as a pattern: its {fields} (facts about this failure) may hold
    anything."""
    return re.sub(r"\\\{\w+\\\}", ".+", re.escape(MISTAKES[mistake].likely_cause()))


def names(message: str, mistake: str) -> bool:
    return re.search(advice_pattern(mistake), message) is not None


def assert_check_names_only(check, broken, mistake: str) -> None:
    """check(broken) fails, naming `mistake` and no other known mistake."""
    with pytest.raises(AssertionError) as err:
        check(broken)
    message = str(err.value)
    assert names(message, mistake), message
    others = [m for m in MISTAKES if m != mistake and names(message, m)]
    assert not others, f"also names {others}: {message}"
