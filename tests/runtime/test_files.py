"""The run files people and other programs read (status.json, summary.json) are strict JSON."""

from __future__ import annotations

import json
import math

import pytest

from policy.files import json_text


def strict_loads(text: str):
    """json.loads that refuses NaN/Infinity, as JavaScript's JSON.parse and jq do."""

    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null_anywhere_in_the_value():
    value = {"success_rate": math.nan, "runs": [1.5, math.inf, {"x": -math.inf}], "pair": (math.nan, 2), "ok": 0.25}
    with pytest.raises(ValueError):
        strict_loads(json.dumps(value))  # what the files held before: NaN
    assert strict_loads(json_text(value, sort_keys=True)) == {
        "success_rate": None,
        "runs": [1.5, None, {"x": None}],
        "pair": [None, 2],
        "ok": 0.25,
    }
