"""Text on a terminal: what a file or a transcript says is shown, never obeyed, and never breaks the output.

A subtitle, a transcript, a file name or a library's message can hold escape sequences (clear the screen,
set the window title, hide text) and other control characters; `shown` removes them from anything printed.
Files keep text exactly as given: only the terminal's copy is cleaned.

`tolerate_encoding` lets stdout and stderr replace what their encoding cannot represent (LANG=C, a pipe
into an old tool) instead of raising UnicodeEncodeError half-way through a table; rich then also draws its
tables with ASCII characters.
"""

from __future__ import annotations

import re
import sys
import unicodedata

# CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), other two-character escapes; their C1 forms.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x9d[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[P^_X][^\x1b\x9c]*(?:\x1b\\|\x9c)?|\x1b[ -~]?"
)
# Bidirectional overrides and isolates reorder what follows them on screen ("Trojan Source").
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _visible(character: str) -> str:
    if character in "\t\n\r\v\f":
        return " "
    category = unicodedata.category(character)
    if category == "Cc" or character in _BIDI or category in ("Zl", "Zp"):
        return ""
    return character


def shown(text: object) -> str:
    """`text` as it may appear on a terminal: escape sequences and control characters removed, line
    breaks and tabs as spaces (a table cell and an error are one line)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(_visible(c) for c in _ESCAPES.sub("", text))


def tolerate_encoding() -> None:
    """Streams that cannot encode everything (ASCII, Latin-1) replace what they cannot write ('?')."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding.startswith("utf") or not hasattr(stream, "reconfigure"):
            continue
        try:
            stream.reconfigure(errors="replace")
        except (ValueError, OSError):  # a stream already closed or detached: nothing to protect
            pass
