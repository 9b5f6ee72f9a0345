"""Text for a terminal or a ``.txt`` view: every control character escaped.

Function, file, thread and exception names, argument values and paths come from
the traced program or the user's files; printed raw, a ``\\x1b[2J`` clears the
screen, an OSC sequence retitles the terminal and a newline fakes a row. Each
control character (C0, DEL, C1), and each Unicode bidirectional override that
could reorder what is shown, is written as its Python escape (``\\x1b``, ``\\n``,
``\\u202e``) instead, and a file name's undecodable byte as ``\\xff``.
"""

from __future__ import annotations

_CONTROL = [*range(0x20), *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F]
_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {code: repr(chr(code))[1:-1] for code in [*_CONTROL, *_BIDI]}


def printable(text: str) -> str:
    """``text`` with every control character escaped (unchanged when it has none)."""
    if text.isascii() and text.isprintable():
        return text
    return valid_text(text).translate(_ESCAPES)


def valid_text(text: str) -> str:
    """``text``, with undecodable bytes and lone surrogates escaped."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
