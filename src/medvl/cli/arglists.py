"""Small parsers of command-line values shared by the commands."""

from __future__ import annotations


def comma_list(text: str | None) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; None or empty -> []."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]
