"""Command-line parsing shared by ``python -m learner`` and the local launcher: a preset, then overrides."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import tyro

from learner.config import DEFAULT_PRESET, RunConfig, available_presets, load_preset


def parse_config(argv: list[str] | None, description: str) -> RunConfig:
    """``--preset NAME`` picks a file in configs/ (default: tmaze-agalite); every other flag overrides it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=os.environ.get("AGALITE_PRESET", DEFAULT_PRESET))
    known, rest = pre.parse_known_args(argv)
    try:
        base = load_preset(known.preset)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    text = (
        f"{description}\n\n"
        f"--preset NAME  start from configs/NAME.toml (default: {DEFAULT_PRESET}; now: {known.preset}); "
        f"available: {', '.join(available_presets())}. The flags below override the preset; the defaults shown "
        "are the preset's."
    )
    cfg = tyro.cli(RunConfig, default=base, args=rest, description=text)
    try:
        cfg.env.kwargs_dict()
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    return cfg


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("AGALITE_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
