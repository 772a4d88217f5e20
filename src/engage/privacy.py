"""Masking of personal data in logs, reports and samples.

Every value that may identify a person passes through :func:`mask` before it leaves the process in a
log line, report or error message. The mask keeps just enough to tell values apart while debugging.
"""

from __future__ import annotations

__all__ = ["mask"]


def mask(value: object) -> str:
    """``"jane.doe@example.org"`` -> ``"j***g (19)"``: first and last character and the length."""
    text = "" if value is None else str(value)
    if len(text) <= 2:
        return "*" * len(text)
    return f"{text[0]}***{text[-1]} ({len(text)})"
