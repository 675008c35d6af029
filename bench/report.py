"""Write a generated results report without losing what people added to it by hand.

A results ``.md`` is rewritten from its ``.json`` whenever a benchmark runs again, but the notes that explain its
numbers (which commit, what load, what a row means) are written by hand below the generated part. Those notes are the
paragraphs from the first one that says "added by hand" to the end of the file; a rewrite keeps them after the new
generated text instead of dropping them.
"""

from __future__ import annotations

from pathlib import Path

HAND_MARK = "added by hand"


def hand_notes(text: str) -> str:
    """The hand-written tail of a report: from the start of the paragraph that first says ``HAND_MARK``; '' if none."""
    at = text.find(HAND_MARK)
    if at < 0:
        return ""
    start = text.rfind("\n\n", 0, at)
    return text[0 if start < 0 else start + 2 :].strip() + "\n"


def write_with_notes(path: Path, generated: str) -> None:
    """``generated`` to ``path``, followed by the hand notes of the report it replaces (if any)."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    # the generated text may carry notes of its own (a .json's "notes" field): never the same paragraph twice
    kept = [p for p in hand_notes(old).split("\n\n") if p.strip() and p.strip() not in generated]
    tail = "\n\n".join(p.strip("\n") for p in kept)
    path.write_text(generated.rstrip("\n") + "\n" + ("\n" + tail + "\n" if tail else ""), encoding="utf-8")
