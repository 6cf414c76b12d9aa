r"""Text from users and platforms made safe to store and to show on a terminal.

Names, messages and a container's output are data, not instructions: a terminal must not
act on them (an ESC sequence sets the window title, writes the clipboard with OSC 52,
clears the screen), and PostgreSQL cannot store a NUL or a lone surrogate at all. So every
control character — C0 except newline and tab, DEL, C1 — and every lone surrogate (what an
invalid UTF-8 byte decodes to with ``surrogateescape``) is written as a visible escape:
``\x1b``, ``\x00``, ``\x7f``, ``\u009b``, ``\udcff``. Bytes that are not UTF-8 are shown
the same way (``\xff``), so nothing a platform returned is dropped.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["escape_controls", "printable_output"]

_CONTROL: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    r"""``text`` with every control character but newline and tab, and every lone
    surrogate, written as a visible escape (``\x1b``, ``\u009b``).
    """
    return _CONTROL.sub(_escaped, text)


def printable_output(data: bytes | str) -> str:
    r"""What a program wrote, as text fit to store and show: UTF-8 where it is, each other
    byte as ``\xNN``, control characters escaped as :func:`escape_controls` does.
    """
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="backslashreplace")
    return escape_controls(data)
