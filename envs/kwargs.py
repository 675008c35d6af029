"""Env keyword arguments given as text (a flag, a preset, an environment variable): one parser for every entry
point, so each refuses the same mistakes with the same one-line message."""

from __future__ import annotations

import json
from typing import Any


def parse_env_kwargs(text: str, what: str = "env kwargs") -> dict[str, Any]:
    """The JSON object in ``text`` as a dict; a ``ValueError`` naming ``what`` when it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} must be a JSON object, got {text!r}: {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {text!r}")
    return value
