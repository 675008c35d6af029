"""Read the compose files the way Compose does, and turn a service into a local process.

Only what the project's compose files use is implemented, strictly: variable interpolation (``$$``, ``$VAR``,
``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``; anything else is an
error), string commands split like a shell, ``environment`` as a mapping or a list. A service becomes a local
process by substituting only what has to change on one machine without Docker: ``python`` is this interpreter,
service names in environment values (host names) are 127.0.0.1, a 0.0.0.0 argument is 127.0.0.1, volume mount
points are local directories, and files the Dockerfiles copy to fixed places are their sources in the repository.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
GPU_COMPOSE_FILE = REPO_ROOT / "docker-compose.gpu.yml"
STACK_FILE = REPO_ROOT / "docker" / "stack.yml"
CURVE_FILE = REPO_ROOT / "docker" / "curve.yml"
# The Compose Specification's JSON schema (github.com/compose-spec/compose-spec, schema/compose-spec.json,
# Apache-2.0), kept beside these tests so the schema checks run on every checkout, offline.
COMPOSE_SCHEMA = REPO_ROOT / "tests" / "docker" / "compose-spec.json"
DOCKER_DIR = REPO_ROOT / "docker"
# Files the Dockerfiles COPY to fixed paths in the images, and their sources here.
IMAGE_FILES = {"/opt/agalite/healthcheck.py": DOCKER_DIR / "healthcheck.py"}

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?)(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


class InterpolationError(ValueError):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("invalid") is not None:
            raise InterpolationError(f"unsupported or invalid interpolation in {text!r} at {m.start()}")
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise InterpolationError(f"required variable {name} is missing: {arg}")
        return value or ""

    return _VAR.sub(sub, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Compose interpolates every string value (keys are left alone)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def load_raw(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    with path.open() as f:
        return yaml.safe_load(f)


def load(path: Path = COMPOSE_FILE, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file with variables substituted (from ``env``; default: none set, so defaults apply)."""
    return interpolate_tree(load_raw(path), {} if env is None else env)


def as_argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, sep, value = item.partition("=")
            if sep:
                out[key] = value
        return out
    return {k: "" if v is None else str(v) for k, v in env.items()}


@dataclass
class LocalService:
    name: str
    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str] | None
    volumes: dict[str, Path] = field(default_factory=dict)


def _localise(arg: str, hosts: Mapping[str, str], mounts: Mapping[str, Path]) -> str:
    if arg in hosts:
        return hosts[arg]
    for target, local in mounts.items():
        if arg == target:
            return str(local)
        if arg.startswith(target.rstrip("/") + "/"):
            return str(local / arg[len(target.rstrip("/")) + 1 :])
    if arg in IMAGE_FILES:
        return str(IMAGE_FILES[arg])
    return arg


def local_service(compose: Mapping[str, Any], name: str, volume_dirs: Mapping[str, Path]) -> LocalService:
    """The command, environment and health check of service ``name`` as a process on this machine.

    ``volume_dirs`` maps each named volume to a local directory.
    """
    services = compose["services"]
    service = services[name]
    hosts = {other: "127.0.0.1" for other in services}
    mounts: dict[str, Path] = {}
    for spec in service.get("volumes") or []:
        if isinstance(spec, str):
            source, target = spec.split(":")[:2]
        else:
            source, target = spec["source"], spec["target"]
        if source not in volume_dirs:
            raise KeyError(f"service {name} mounts {source!r}, which has no local directory")
        mounts[target] = volume_dirs[source]
    argv = as_argv(service.get("entrypoint")) + as_argv(service.get("command"))
    if not argv:
        raise ValueError(f"service {name} sets no command; the image default would run")
    # Service names are host names only in values of the environment (an argument "actor" is a module name).
    argv = [_localise(a, {"0.0.0.0": "127.0.0.1"}, mounts) for a in argv]
    if argv[0] == "python":
        argv[0] = sys.executable
    env = {k: _localise(v, hosts, mounts) for k, v in service_environment(service).items()}
    health = None
    test = (service.get("healthcheck") or {}).get("test")
    if test:
        test = as_argv(test)
        if test[0] != "CMD":
            raise ValueError(f"service {name}: only exec-form (CMD) health checks are supported, got {test[0]}")
        health = [_localise(a, {}, mounts) for a in test[1:]]
        if health[0] == "python":
            health[0] = sys.executable
    return LocalService(name=name, argv=argv, env=env, healthcheck=health, volumes=mounts)


def process_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any AGALITE_* settings of its own, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGALITE_")}
    env.update(extra)
    return env
