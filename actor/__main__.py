"""``python -m actor``: one actor process. Every flag has an environment-variable twin (``AGALITE_<FLAG>``, e.g.
``AGALITE_LEARNER_HOST`` for ``--learner-host``), which is how the compose file configures actors. The twins are
generated from :class:`actor.client.ActorConfig`'s fields and parsed by tyro like the flags themselves, so a new
field gets its twin, its type and its help text without another edit; flags given on the command line win."""

from __future__ import annotations

from protocol.stop_signal import StopSignal

# Before the imports below (ONNX Runtime and the environments take a second or two): a stop from then on is kept,
# not lost (protocol.stop_signal; in a container the actor is PID 1, which ignores an unhandled SIGTERM).
STOP = StopSignal()
if __name__ == "__main__":
    STOP.install()

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import typing  # noqa: E402

import tyro  # noqa: E402

from actor.client import Actor, ActorConfig  # noqa: E402
from policy.metadata import PolicyError  # noqa: E402

ENV_PREFIX = "AGALITE_"


def env_var_name(field: str, prefix: str = ENV_PREFIX) -> str:
    """The environment-variable twin of a config field: ``learner_host`` -> ``AGALITE_LEARNER_HOST``."""
    return prefix + field.upper()


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def args_from_environment(cls: type, environ: typing.Mapping[str, str], prefix: str = ENV_PREFIX) -> list[str]:
    """Command-line arguments equivalent to the twins set in ``environ`` (empty ones count as unset).

    Each value is checked on its own first, so a bad one is reported by its variable's name in one line."""
    hints = typing.get_type_hints(cls)
    args: list[str] = []
    for f in dataclasses.fields(cls):
        name = env_var_name(f.name, prefix)
        raw = environ.get(name, "")
        if raw == "":
            continue
        if hints[f.name] is bool:
            if raw.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise SystemExit(f"error: {name}={raw!r}: expected one of 1/true/yes/0/false/no")
            one = [_flag(f.name) if raw.lower() in ("1", "true", "yes") else "--no-" + f.name.replace("_", "-")]
        else:
            one = [_flag(f.name), raw]
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            try:
                tyro.cli(cls, args=one)
            except SystemExit:
                ok = False
            else:
                ok = True
        if not ok:
            raise SystemExit(f"error: {name}={raw!r} is not a valid {_flag(f.name)} ({hints[f.name]})")
        args += one
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = tyro.cli(
        ActorConfig,
        args=args_from_environment(ActorConfig, os.environ) + argv,
        description="An actor: steps environments with the learner's ONNX policy and streams trajectory segments "
        f"to it over ZeroMQ (no torch). Every flag has an environment-variable twin: {ENV_PREFIX}<FLAG> "
        f"(e.g. {env_var_name('learner_host')}); flags win.",
    )
    logging.basicConfig(
        level=os.environ.get("AGALITE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
    )
    try:
        actor = Actor(cfg, stop=STOP.event)
    except PolicyError as err:  # e.g. --device cuda without onnxruntime-gpu
        raise SystemExit(f"error: {err}") from None
    STOP.install()  # for callers of main() other than `python -m actor` (installing twice is harmless)
    code = actor.run()
    if STOP.received:
        logging.getLogger("actor").info("%s: stopped after the current step", STOP.received)
    return code


if __name__ == "__main__":
    sys.exit(main())
