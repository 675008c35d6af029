"""What a resume may change: operational settings, yes; what was trained, only when the user says so.

Resuming a run with another environment, other spaces or other training settings silently mixes two experiments in
one set of weights and one curve. ``check_resume`` compares the checkpoint's config with the new one and refuses a
change of the environment, the spaces, the model, PPO, the segment length, the batch, the lag bound or the seed in
one line that lists what changed, unless ``--allow-config-change`` is passed (the model can never change: its
weights would not fit). Everything else (steps budget, network, device, intervals, actor counts) may change freely.
``write_run_config`` never overwrites a different ``config.json`` silently: the old one is kept beside it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from learner.config import RunConfig, ppo_from_saved
from models.config import ModelConfig
from policy.files import write_atomically

log = logging.getLogger("learner")

#: Top-level config keys whose change makes a different experiment.
TRAINING_KEYS: tuple[str, ...] = ("env", "model", "ppo", "segment_length", "batch_envs", "max_policy_lag", "seed")
#: Keys that are about this start of the process only, never saved.
_NOT_SAVED = ("allow_config_change",)


class ResumeConfigError(ValueError):
    """A resume that would change what the run trains; the message is one line."""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _normalised(cfg: dict[str, Any]) -> dict[str, Any]:
    """The training part of a config dict, flattened; env kwargs compared as JSON values, not as text."""
    part = {k: cfg.get(k) for k in TRAINING_KEYS}
    env = dict(part.get("env") or {})
    if isinstance(env.get("kwargs"), str):
        with contextlib.suppress(json.JSONDecodeError):
            env["kwargs"] = json.loads(env["kwargs"])
    part["env"] = env
    return _flatten(part)


def _flag(key: str, value: Any) -> str | None:
    """The command-line flag that sets ``key`` (a flattened config key) back to ``value``, where one is simple."""
    name = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        head, _, last = name.rpartition(".")
        return name if value else f"{head}.no-{last}" if head else f"--no-{last[2:]}"
    if isinstance(value, (int, float, str)):
        return f"{name} {value}"
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _flags_back(old: dict[str, Any], new: dict[str, Any]) -> list[str | None]:
    """For each training setting of ``old`` that ``new`` changes, the flag that sets it back (None where no simple
    flag does): a default that changed since a run was written is the usual cause of a refused resume."""
    a, b = _normalised(old), _normalised(new)
    return [_flag(k, v) for k, v in sorted(a.items()) if b.get(k) != v]


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every training setting that differs."""
    a, b = _normalised(old), _normalised(new)
    return [f"{k}: {_short(a.get(k))} -> {_short(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_resume(
    ckpt: dict[str, Any],
    cfg: RunConfig,
    observation_space: dict[str, Any],
    action_space: dict[str, Any],
    where: Path,
) -> list[str]:
    """Refuse (ResumeConfigError) a resume that changes what is trained, unless ``cfg.allow_config_change``.
    Returns the changes that were allowed (empty when nothing changed)."""
    # Only what the model kind reads: a GRU run resumes although an AGaLiTe default changed since it was written.
    saved = ModelConfig.from_saved(ckpt["model_config"]).used()
    now = cfg.model.used()
    if saved != now:
        changes = config_changes({"model": saved}, {"model": now})
        back = _flags_back({"model": saved}, {"model": now})
        hint = f" ({' '.join(f for f in back if f)})" if back and all(back) else ""
        raise ResumeConfigError(
            f"{where} holds a checkpoint of another model ({'; '.join(changes)}); "
            f"use another --run-dir or the same model settings{hint}"
        )
    saved_run = dict(ckpt.get("config") or {})
    if isinstance(saved_run.get("model"), dict):
        saved_run["model"] = ModelConfig.from_saved(saved_run["model"]).used()
    if isinstance(saved_run.get("ppo"), dict):
        saved_run["ppo"] = ppo_from_saved(saved_run["ppo"])
    new_run = {**cfg.to_dict(), "model": now}
    changes = config_changes(saved_run, new_run)
    back = _flags_back(saved_run, new_run)
    for name, old, new in (
        ("observation_space", ckpt["observation_space"], observation_space),
        ("action_space", ckpt["action_space"], action_space),
    ):
        before, after = _flatten(old, f"{name}."), _flatten(new, f"{name}.")
        changes += [
            f"{k}: {_short(before.get(k))} -> {_short(after.get(k))}"
            for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)
        ]
    if changes and not getattr(cfg, "allow_config_change", False):
        named = bool(back) and all(back) and len(back) == len(changes)  # every change has a flag (none is a space)
        hint = f", or {' '.join(f for f in back if f)} to resume it as it trained" if named else ""
        raise ResumeConfigError(
            f"{where} was trained with another configuration ({'; '.join(changes)}); pass --allow-config-change "
            f"to resume with the new one{hint}, or use another --run-dir"
        )
    if changes:
        log.warning("resuming with a changed configuration (allowed): %s", "; ".join(changes))
    return changes


def write_run_config(cfg: RunConfig, run_dir: Path) -> Path | None:
    """Write ``config.json``; a different existing one is first kept as ``config.before-<UTC time>.json``, and what
    changed is logged. Returns the path of the kept copy, if any."""
    path = run_dir / "config.json"
    data = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_SAVED}
    kept: Path | None = None
    try:
        old = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        old = None
    if isinstance(old, dict) and old != data:
        kept = path.with_name(f"config.before-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
        n = 1
        while kept.exists():
            n += 1
            kept = kept.with_name(f"{kept.stem.split('~')[0]}~{n}.json")
        path.replace(kept)
        changed = sorted(
            k for k in set(_flatten(old)) | set(_flatten(data)) if _flatten(old).get(k) != _flatten(data).get(k)
        )
        log.info("config.json changed (%s); the previous one is kept as %s", ", ".join(changed), kept.name)
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True))
    return kept
