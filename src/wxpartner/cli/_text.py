"""Text shown to people, made safe, and a token's check: what ``serve`` needs of the commands' helpers,
without rich (``_output``) or httpx (``_http``), which ``serve`` does not import (issue 9: ≈ 55 ms of a
start)."""

from __future__ import annotations

import re
import unicodedata

# What a terminal acts on instead of showing: C0 controls (ESC starts a sequence, CR returns to the
# line's start), DEL, C1 controls (U+0080-U+009F: a header byte 0x9B decodes to U+009B, a terminal's
# CSI), format characters (the bidirectional overrides and isolates reorder what follows; zero-width
# ones hide inside an id), line and paragraph separators, and lone surrogates (no UTF-8 encodes them:
# printing one was a UnicodeEncodeError).
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_LINE_BREAK = re.compile(r"\r?\n")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(ch: str, undecodable: bool = False) -> str:
    """As Python writes it in a string literal: ``\\n``, ``\\x1b``, ``\\u202e``; ``undecodable``: a
    byte that was not UTF-8, decoded with ``surrogateescape`` (U+DC80-U+DCFF), as ``\\xNN`` of the byte."""
    code = ord(ch)
    if ch in _SHORT:
        return _SHORT[ch]
    if undecodable and 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str, *, lines: bool = False, undecodable: bool = False) -> str:
    """``text`` with every character a terminal would act on instead of showing written as its escape
    (ESC as ``\\x1b``, U+009B as ``\\x9b``, U+202E as ``\\u202e``), so what comes from outside cannot
    move the cursor, recolour or clear the screen, reorder a line, or fake a line of its own. A line
    feed is such a character too (a value is one line), unless ``lines``: a text of several lines
    (a bill file) keeps its line feeds (a CRLF as one) and tabs. A backslash is doubled whenever the
    text is shown, escaped or not, as Python writes it: the four characters ``\\x1b`` of a text show as
    ``\\\\x1b``, never as what an escaped ESC shows. ``undecodable``: ``text`` was decoded with
    ``surrogateescape``, and a byte that was not UTF-8 shows as ``\\xNN``."""
    if text.isprintable() and "\\" not in text:  # the common case, at C speed
        return text
    if lines:
        return "\n".join(_escape_unsafe(part, "\t", undecodable) for part in _LINE_BREAK.split(text))
    return _escape_unsafe(text, "", undecodable)


def _escape_unsafe(text: str, keep: str, undecodable: bool) -> str:
    return "".join(
        "\\\\"
        if ch == "\\"
        else _escaped(ch, undecodable)
        if ch not in keep and unicodedata.category(ch) in UNSAFE_CATEGORIES
        else ch
        for ch in text
    )


def sendable_token(token: str) -> bool:
    """A sandbox token an HTTP client can send in ``Authorization: Bearer …``: printable ASCII, no space."""
    return all("!" <= ch <= "~" for ch in token)
