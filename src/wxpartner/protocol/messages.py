"""The exact byte strings that get signed (spec: protocol.md §3.1 and §5.3)."""

from __future__ import annotations


def canonical_url(raw_path: str, raw_query: str | None) -> str:
    """Raw (still percent-encoded) path, plus ``?`` and the raw query only when there is one."""
    return f"{raw_path}?{raw_query}" if raw_query else raw_path


def request_message(method: str, url: str, timestamp: str, nonce: str, body: bytes | str) -> bytes:
    """Five LF-terminated lines: method, canonical URL, timestamp, nonce, body (exact bytes)."""
    body_bytes = body.encode("utf-8") if isinstance(body, str) else body
    head = f"{method}\n{url}\n{timestamp}\n{nonce}\n".encode()
    return head + body_bytes + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes | str) -> bytes:
    """Three LF-terminated lines: timestamp, nonce, body (empty for 204). Also used by callbacks."""
    body_bytes = body.encode("utf-8") if isinstance(body, str) else body
    return f"{timestamp}\n{nonce}\n".encode() + body_bytes + b"\n"


# Control pictures (U+2400 + code; DEL U+2421): a CR, a tab or any other control character of a
# string-to-sign is shown as a symbol, never acted on (a terminal returns to the line's start on a CR,
# an HTML parser turns it into a line feed), so an explanation shows the bytes the server verified.
_PICTURES = {code: chr(0x2400 + code) for code in range(0x20) if code != 0x0A} | {0x7F: "\u2421"}


def visible_controls(text: str) -> str:
    """``text`` with every control character except the line feed shown as its control picture
    (CR as ␍, tab as ␉, NUL as ␀)."""
    return text.translate(_PICTURES)
