"""The Dockerfiles, read statically (there is no Docker engine here): pinned installs, no torch in the actor image,
unprivileged users, health checks, a build context that holds what the images copy and nothing local."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import compose as dt

ACTOR_DOCKERFILE = dt.DOCKER_DIR / "actor.Dockerfile"
LEARNER_DOCKERFILE = dt.DOCKER_DIR / "learner.Dockerfile"
DOCKERFILES = [ACTOR_DOCKERFILE, LEARNER_DOCKERFILE]


# ---- a small Dockerfile reader -----------------------------------------------------------------------------------
def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; continuation lines joined, comment lines dropped (as Docker does)."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path.name} ends inside a continuation"
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def runs(stage) -> list[str]:
    return [args for word, args in stage if word == "RUN"]


def pip_installs(path: Path) -> list[list[str]]:
    """The argument lists of every `pip install` in the file."""
    found = []
    for stage in stages(path):
        for command in runs(stage):
            for m in re.finditer(r"pip install ([^;&|]*)", command):
                found.append(shlex.split(m.group(1)))
    return found


def positional(args: list[str]) -> list[str]:
    """Install targets: the arguments that are neither options nor option values."""
    with_value = {
        "-c",
        "--constraint",
        "-r",
        "--requirement",
        "--index-url",
        "-i",
        "--extra-index-url",
        "--find-links",
        "-f",
    }
    targets, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in with_value:
            skip = True
        elif a.startswith("$"):
            continue  # a shell variable holding options (the learner's torch index)
        elif not a.startswith("-"):
            targets.append(a)
    return targets


def copies(stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of the COPY instructions without --from (i.e. from the build context)."""
    out = []
    for word, args in stage:
        if word != "COPY":
            continue
        parts = shlex.split(args)
        if any(p.startswith("--from") for p in parts):
            continue
        parts = [p for p in parts if not p.startswith("--")]
        out.append((parts[:-1], parts[-1]))
    return out


# ---- the actor image ---------------------------------------------------------------------------------------------
def test_actor_image_installs_the_pinned_core_set_and_no_extras():
    installs = pip_installs(ACTOR_DOCKERFILE)
    assert installs, "the actor image installs nothing"
    for args in installs:
        assert args[args.index("-c") : args.index("-c") + 2] == ["-c", "constraints.txt"], args
        assert "--no-cache-dir" in args
    # First the core requirements (no extras), then exactly the project without dependencies, then `pip check`.
    assert [positional(args) for args in installs] == [[], ["."]], installs
    assert installs[0][installs[0].index("-r") + 1] == "/tmp/requirements.txt"
    assert "--no-deps" in installs[1]
    text = " ".join(" ".join(runs(s)) for s in stages(ACTOR_DOCKERFILE))
    assert "python /tmp/project_requirements.py > /tmp/requirements.txt" in text
    # the GPU variant swaps the ONNX Runtime build through a build argument, onnxruntime by default
    assert "ARG ONNXRUNTIME_PACKAGE=onnxruntime\n" in ACTOR_DOCKERFILE.read_text()
    assert "ONNXRUNTIME_PACKAGE=${ONNXRUNTIME_PACKAGE} python /tmp/project_requirements.py" in text
    assert "pip check" in text
    assert "torch" not in text
    build_copies = [src for stage in stages(ACTOR_DOCKERFILE) for srcs, _ in copies(stage) for src in srcs]
    assert "constraints.txt" in build_copies and "pyproject.toml" in build_copies


def _requirement_closure(requirements: list[str], extras: set[str]) -> dict[str, str]:
    """Distribution name -> installed version for the requirements and everything they require, following the
    metadata of the distributions installed in this environment (markers evaluated for this platform)."""
    seen: dict[str, str] = {}
    todo = [(Requirement(r), extras) for r in requirements]
    while todo:
        req, active = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (active or {""})):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[name] = dist.version
        for sub in dist.requires or []:
            todo.append((Requirement(sub), set(req.extras)))
    return seen


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (dt.REPO_ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _project() -> dict:
    return tomllib.loads((dt.REPO_ROOT / "pyproject.toml").read_text())["project"]


def test_actor_dependency_set_is_torch_free_and_pinned():
    core = _project()["dependencies"]
    closure = _requirement_closure(core, set())
    assert "torch" not in closure, "the core (actor) dependency set pulls in torch"
    assert not {"onnx", "tensorboard"} & set(closure)
    pins = _pins()
    unpinned = sorted(set(closure) - set(pins))
    assert unpinned == [], f"constraints.txt does not pin {unpinned}"
    # constraints.txt is what is installed here, so the resolution above is the one the image gets.
    assert {n: v for n, v in closure.items() if pins[n] != v} == {}


def test_learner_dependency_set_pins_torch():
    project = _project()
    closure = _requirement_closure(project["dependencies"] + project["optional-dependencies"]["learner"], set())
    assert {"torch", "onnx", "tensorboard"} <= set(closure)
    pins = _pins()
    assert pins["torch"] == "2.13.0"
    assert sorted(n for n in ("torch", "onnx", "tensorboard", "onnxruntime") if n not in pins) == []


def test_actor_image_copies_every_project_package_the_actor_imports():
    code = (
        "import sys, pathlib\n"
        "import actor.__main__, actor.client, actor.play, policy.runtime, envs, protocol\n"
        f"root = pathlib.Path({str(dt.REPO_ROOT)!r})\n"
        "names = set()\n"
        "for m in list(sys.modules.values()):\n"
        "    f = getattr(m, '__file__', None)\n"
        "    venv = pathlib.Path(sys.prefix).resolve()\n"
        "    if f and pathlib.Path(f).resolve().is_relative_to(root) and not pathlib.Path(f).resolve()"
        ".is_relative_to(venv):\n"
        "        names.add(pathlib.Path(f).resolve().relative_to(root).parts[0])\n"
        "print(' '.join(sorted(names)))\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=dt.REPO_ROOT,
        env=dt.process_env({}),
    )
    assert result.returncode == 0, result.stderr
    names_line, torch_line = result.stdout.strip().splitlines()[-2:]
    needed = set(names_line.split())
    assert needed, "nothing of the project was imported"
    assert torch_line == "False"
    copied = {src.rstrip("/") for stage in stages(ACTOR_DOCKERFILE) for srcs, _ in copies(stage) for src in srcs}
    assert needed <= copied, f"the actor image lacks {sorted(needed - copied)}"
    assert not {"models", "export", "learner"} & copied  # the torch side stays out of the actor image


# ---- the learner image ---------------------------------------------------------------------------------------------
def test_learner_image_installs_the_pinned_learner_set_with_a_cpu_torch_by_default():
    installs = pip_installs(LEARNER_DOCKERFILE)
    assert len(installs) == 2  # the requirements (a layer that code changes reuse), then the project itself
    for args in installs:
        assert args[args.index("-c") + 1] == "constraints.txt"
        assert "--no-cache-dir" in args
    assert installs[0][installs[0].index("-r") + 1] == "/tmp/requirements.txt"
    assert positional(installs[0]) == []
    args = installs[1]
    assert "--no-deps" in args
    assert positional(args) == [".[learner]"]
    assert args[args.index(".[learner]") - 1] == "-e"  # editable: the learner reads configs/ beside its sources
    build = _stage_named(LEARNER_DOCKERFILE, "build")
    assert ("ARG", "TORCH_VARIANT=cpu") in build
    assert ("ARG", "PYPI_INDEX_URL=https://pypi.org/simple") in build and ("ARG", "TORCH_INDEX_URL=") in build
    text = " ".join(runs(build))
    assert "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/$TORCH_VARIANT}" in text  # cpu -> .../whl/cpu
    assert "--extra-index-url $PYPI_INDEX_URL" in text
    # Local wheels take part (docker/wheels/, or the `torchwheels` build context), and the build fails unless the
    # installed torch is the variant asked for.
    assert "--find-links /wheels" in text
    assert "python /tmp/project_requirements.py learner > /tmp/requirements.txt" in text
    assert "pip check" in text
    assert 'check_torch_variant.py "$TORCH_VARIANT"' in text
    assert ("COPY", "--from=torchwheels / /wheels/") in build
    assert _stage_named(LEARNER_DOCKERFILE, "torchwheels") == [
        ("FROM", "scratch AS torchwheels"),
        ("COPY", "docker/wheels/ /"),
    ]
    copied = {src.rstrip("/") for srcs, _ in copies(build) for src in srcs}
    # Everything the learner imports, and the presets it reads from configs/ next to its package.
    assert {"protocol", "envs", "policy", "models", "export", "actor", "learner", "configs"} <= copied
    assert "constraints.txt" in copied


@pytest.mark.parametrize("extras", [[], ["learner"]], ids=["core", "learner"])
def test_project_requirements_lists_the_core_set_and_the_named_extras(extras):
    result = subprocess.run(
        [sys.executable, str(dt.DOCKER_DIR / "project_requirements.py"), *extras],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=dt.REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    project = _project()
    expected = project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]
    assert result.stdout.splitlines() == expected
    wrong = subprocess.run(
        [sys.executable, str(dt.DOCKER_DIR / "project_requirements.py"), "no-such-extra"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=dt.REPO_ROOT,
    )
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: pyproject.toml has no extra 'no-such-extra'")


def test_project_requirements_swaps_in_onnxruntime_gpu_for_the_gpu_actor_image():
    def run(package: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(dt.DOCKER_DIR / "project_requirements.py")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=dt.REPO_ROOT,
            env={**os.environ, "ONNXRUNTIME_PACKAGE": package},
        )

    core = _project()["dependencies"]
    gpu = run("onnxruntime-gpu")
    assert gpu.returncode == 0, gpu.stderr
    names = [canonicalize_name(Requirement(r).name) for r in gpu.stdout.splitlines()]
    assert "onnxruntime-gpu" in names and "onnxruntime" not in names  # never both: they install the same module
    assert len(names) == len(core)
    assert "onnxruntime-gpu" in _pins()  # pinned in the same single place as everything else
    wrong = run("onnxruntime-rocm")
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: ONNXRUNTIME_PACKAGE must be one of")


def _stage_named(path: Path, name: str) -> list[tuple[str, str]]:
    found = [s for s in stages(path) if s[0][1].endswith(f" AS {name}")]
    assert len(found) == 1, f"{path.name} has no single stage named {name}"
    return found[0]


def test_learner_image_default_command_binds_every_interface_and_writes_to_the_volume():
    final = stages(LEARNER_DOCKERFILE)[-1]
    argv = json.loads([a for w, a in final if w == "CMD"][-1])  # exec form
    assert argv[:3] == ["python", "-m", "learner"]
    assert argv[argv.index("--net.host") + 1] == "0.0.0.0"
    assert argv[argv.index("--run-dir") + 1].startswith("/runs/")
    assert ("VOLUME", '["/runs"]') in final
    assert any("chown agalite:agalite /runs" in r for r in runs(final))


# ---- both images ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_as_an_unprivileged_user(path):
    final = stages(path)[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    created = " ".join(runs(final))
    m = re.search(rf"useradd [^;&]*--uid (\d+)[^;&]* {re.escape(user)}(\s|$)", created)
    assert m and int(m.group(1)) != 0, f"user {user} is not created with a non-zero uid"
    # Nothing runs as root after the switch.
    after = final[[i for i, (w, _) in enumerate(final) if w == "USER"][-1] :]
    assert all(w != "RUN" for w, _ in after)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_image_is_slim_with_a_separate_build_stage(path):
    # The learner's local-wheel stage (FROM scratch, files only) is not an image stage.
    all_stages = [s for s in stages(path) if s[0][1] != "scratch AS torchwheels"]
    assert len(all_stages) == 2
    for stage in all_stages:
        assert stage[0][1].startswith("${PYTHON_IMAGE}")
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in instructions(path)
    final = all_stages[-1]
    final_runs = " ".join(runs(final))
    # No compilers, package managers' caches or pip in the runtime stage: it only copies the finished venv.
    assert "apt-get" not in final_runs and "pip" not in final_runs
    assert any(w == "COPY" and "--from=build /opt/venv /opt/venv" in a for w, a in final)
    assert all("pip uninstall --yes pip" in " ".join(runs(s)) for s in all_stages[:-1])


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_image_health_check_uses_the_copied_script(path):
    final = stages(path)[-1]
    checks = [args for word, args in final if word == "HEALTHCHECK"]
    assert len(checks) == 1
    argv = json.loads(checks[0].split(" CMD ", 1)[1])
    assert argv[:2] == ["python", "/opt/agalite/healthcheck.py"]
    assert (["docker/healthcheck.py"], "/opt/agalite/healthcheck.py") in copies(final)
    assert dt.IMAGE_FILES["/opt/agalite/healthcheck.py"].is_file()


# ---- the build context ---------------------------------------------------------------------------------------------
def _dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    patterns = []
    for line in (dt.REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif line.startswith("**", i):
                regex += ".*"
                i += 2
            elif line[i] == "*":
                regex += "[^/]*"
                i += 1
            elif line[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(line[i])
                i += 1
        patterns.append((negate, re.compile(regex + r"\Z")))
    return patterns


def _ignored(path: str, patterns) -> bool:
    """Docker's rule: the last matching pattern wins; a path is also excluded when a parent folder is."""
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        candidate = "/".join(parts[:depth])
        verdict = None
        for negate, rx in patterns:
            if rx.match(candidate):
                verdict = not negate
        if verdict:
            return True
    return False


def test_build_context_holds_what_the_images_copy_and_no_local_state():
    patterns = _dockerignore_patterns()
    for path in DOCKERFILES:
        for stage in stages(path):
            for sources, _ in copies(stage):
                for src in sources:
                    assert (dt.REPO_ROOT / src).exists(), f"{path.name} copies {src}, which does not exist"
                    assert not _ignored(src, patterns), f"{path.name} copies {src}, which .dockerignore excludes"
                    for file in (dt.REPO_ROOT / src).rglob("*.py") if (dt.REPO_ROOT / src).is_dir() else []:
                        rel = file.relative_to(dt.REPO_ROOT).as_posix()
                        if "__pycache__" not in rel:
                            assert not _ignored(rel, patterns), rel
    for local in (
        ".venv",
        ".git",
        "runs/x/checkpoints/latest.pt",
        "learner/__pycache__/train.cpython-311.pyc",
        "keys/client.key_secret",
        ".env",
        "tests/docker/test_images.py",
        "runs",
    ):
        assert _ignored(local, patterns), f"{local} would be sent to the Docker daemon"
