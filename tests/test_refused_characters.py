"""The character rule of path, query and body values (server/validation.py: ``_refused_in``): NUL and
characters above U+FFFF are refused, NUL named first; everything else, ASCII or not, is taken. The
check runs on every request's path and query values, so it is written in C-level string operations;
these cases pin the rule it must keep (the boundaries, the order of the two issues)."""

from __future__ import annotations

import random

import pytest

from wxpartner.server.validation import _FOUR_BYTE_ISSUE, _NUL_ISSUE, _refused_in


def _by_the_rule(text: str) -> str | None:
    """The rule spelled out character by character (how it was first written)."""
    if "\x00" in text:
        return _NUL_ISSUE
    if any(ord(ch) > 0xFFFF for ch in text):
        return _FOUR_BYTE_ISSUE
    return None


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        ("", None),
        ("1900000109", None),
        ("wxp_employee_0123456789abcdef", None),
        ("张三的额度卡", None),  # 3-byte UTF-8: taken
        ("\uffff", None),  # the last character taken
        ("a\ud83dz", None),  # a lone surrogate is below U+FFFF (percent-decoded paths can carry one)
        ("\U00010000", _FOUR_BYTE_ISSUE),  # the first character refused
        ("12\U0001f60034", _FOUR_BYTE_ISSUE),
        ("张三\U0001f600", _FOUR_BYTE_ISSUE),
        ("12\x0034", _NUL_ISSUE),
        ("\x00", _NUL_ISSUE),
        ("\U0001f600\x00", _NUL_ISSUE),  # both: NUL is named, as before
        ("张\x00三", _NUL_ISSUE),
    ],
)
def test_refused_characters(text: str, issue: str | None) -> None:
    assert _refused_in(text) == issue


def test_refused_characters_agree_with_the_rule_on_mixed_text() -> None:
    alphabet = [*"aZ0_-\x00\x7f\x80é张\ud800\uffff", "\U00010000", "\U0001f600", "\U0010ffff"]
    rng = random.Random(20261206)
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        assert _refused_in(text) == _by_the_rule(text), repr(text)
