"""The compose files: valid against the Compose Specification, and shaped the way the README promises (a learner
that binds every interface and keeps its run on a volume, actors that scale, TensorBoard, an opt-in GPU)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess

import pytest

from tests.helpers import compose as dt

SERVICES = ("learner", "actor", "tensorboard")


@pytest.fixture(scope="module")
def schema_validator():
    assert dt.COMPOSE_SCHEMA.is_file(), f"the Compose Specification schema is missing: {dt.COMPOSE_SCHEMA}"
    import jsonschema

    schema = json.loads(dt.COMPOSE_SCHEMA.read_text())
    # The schema declares draft-07 (with an https URL that jsonschema does not recognise by itself).
    assert "draft-07" in schema.get("$schema", "")
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize(
    "path", [dt.COMPOSE_FILE, dt.GPU_COMPOSE_FILE, dt.STACK_FILE, dt.CURVE_FILE], ids=lambda p: p.name
)
def test_compose_file_matches_the_compose_specification(schema_validator, path):
    assert _errors(schema_validator, dt.load_raw(path)) == []


def test_the_schema_check_rejects_a_broken_file(schema_validator):
    """Control: the validator is strict enough to catch typos of the kind that would break `docker compose up`."""
    doc = dt.load_raw()
    bad = copy.deepcopy(doc)
    bad["services"]["actor"]["replica"] = 4  # not a service key
    assert _errors(schema_validator, bad)
    bad = copy.deepcopy(doc)
    bad["services"]["learner"]["restart"] = ["unless-stopped"]
    assert _errors(schema_validator, bad)


def test_every_variable_has_a_default():
    """`docker compose up` works with no .env file: every ${VAR} has a default (or is optional)."""
    for path in (dt.COMPOSE_FILE, dt.GPU_COMPOSE_FILE, dt.STACK_FILE, dt.CURVE_FILE):
        text = path.read_text()
        code = "\n".join(line.split(" #")[0] for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", code) == [], f"{path.name}: variables without default"
        dt.load(path, env={})  # no required variable is missing


def test_services_and_the_run_volume():
    compose = dt.load()
    assert set(SERVICES) <= set(compose["services"])
    assert "runs" in compose["volumes"]
    learner, actor, board = (compose["services"][s] for s in SERVICES)
    # A finished learner (exit 0) must not be started again and again; crashes restart it (it resumes).
    assert learner["restart"] == "on-failure"
    for service in (actor, board):
        assert service["restart"] == "unless-stopped"
    # The learner and TensorBoard run the same image; only the learner's and the actor's images are built.
    assert learner["image"] == board["image"] != actor["image"]
    assert learner["build"]["dockerfile"] == "docker/learner.Dockerfile"
    assert actor["build"]["dockerfile"] == "docker/actor.Dockerfile"
    assert learner["build"]["args"]["TORCH_VARIANT"] == "cpu"


def test_learner_binds_every_interface_publishes_its_ports_and_keeps_its_run_on_the_volume():
    from learner.cli import parse_config

    compose = dt.load()
    learner = compose["services"]["learner"]
    argv = dt.as_argv(learner["command"])
    assert argv[:3] == ["python", "-m", "learner"]
    env = dt.service_environment(learner)
    assert env["AGALITE_PRESET"] == "tmaze-agalite"
    # The flags are the learner's own: parse them exactly as `python -m learner` would.
    cfg = parse_config(argv[3:], "compose")
    assert cfg.net.host == "0.0.0.0"
    assert cfg.run_dir == "/runs/tmaze-agalite"
    ports = {
        (cfg.net.trajectory_port, cfg.net.trajectory_port),
        (cfg.net.policy_port, cfg.net.policy_port),
        (cfg.net.control_port, cfg.net.control_port),
    }
    assert ports == {(5555, 5555), (5556, 5556), (5557, 5557)}
    published = set()
    for spec in learner["ports"]:
        host, container = spec.removesuffix("/tcp").split(":")
        published.add((int(host), int(container)))
    assert published == ports
    assert "runs:/runs" in learner["volumes"]
    health = dt.as_argv(learner["healthcheck"]["test"])
    assert health[-2:] == ["--port", str(cfg.net.control_port)]


def test_learner_flags_and_ports_follow_the_environment():
    from learner.cli import parse_config

    env = {
        "AGALITE_RUN_NAME": "exp1",
        "AGALITE_CONTROL_PORT": "7007",
        "AGALITE_TRAJECTORY_PORT": "7005",
        "AGALITE_POLICY_PORT": "7006",
        "AGALITE_LEARNER_ARGS": "--total-steps 1234 --env.kwargs '{\"corridor_length\": 5}'",
    }
    compose = dt.load(env=env)
    learner, actor = compose["services"]["learner"], compose["services"]["actor"]
    cfg = parse_config(dt.as_argv(learner["command"])[3:], "compose")
    assert (cfg.run_dir, cfg.total_steps, cfg.env.kwargs_dict()) == ("/runs/exp1", 1234, {"corridor_length": 5})
    assert (cfg.net.trajectory_port, cfg.net.policy_port, cfg.net.control_port) == (7005, 7006, 7007)
    assert {p.removesuffix("/tcp") for p in learner["ports"]} == {"7005:7005", "7006:7006", "7007:7007"}
    actor_env = dt.service_environment(actor)
    assert (
        actor_env["AGALITE_TRAJECTORY_PORT"],
        actor_env["AGALITE_POLICY_PORT"],
        actor_env["AGALITE_CONTROL_PORT"],
    ) == ("7005", "7006", "7007")


def test_actor_service_scales_and_finds_the_learner_by_its_service_name():
    from actor.client import ActorConfig

    compose = dt.load()
    actor = compose["services"]["actor"]
    # `--scale actor=N` / deploy.replicas need containers without a fixed name and without fixed host ports.
    assert "container_name" not in actor
    assert "ports" not in actor and "network_mode" not in actor
    assert int(actor["deploy"]["replicas"]) >= 1
    assert dt.as_argv(actor["command"]) == ["python", "-m", "actor"]
    env = dt.service_environment(actor)
    assert env["AGALITE_LEARNER_HOST"] == "learner" and "learner" in compose["services"]
    # Every AGALITE_<FLAG> variable is a real actor flag (the actor silently ignores unknown ones).
    fields = {name.upper() for name in vars(ActorConfig())}
    unknown = {k for k in env if k.startswith("AGALITE_") and k.removeprefix("AGALITE_") not in fields}
    assert unknown <= {"AGALITE_LOG_LEVEL"}
    assert "AGALITE_ACTOR_ID" not in env  # replicas must not share an identity


def test_tensorboard_reads_the_run_volume():
    compose = dt.load()
    board = compose["services"]["tensorboard"]
    argv = dt.as_argv(board["command"])
    assert argv[0] == "tensorboard" and "--bind_all" in argv
    logdir = argv[argv.index("--logdir") + 1]
    sources = {}  # mount point -> volume
    for spec in board["volumes"]:
        source, target = spec.split(":")[:2]
        sources[target] = source
    assert [sources[t] for t in sources if logdir == t or logdir.startswith(t + "/")] == ["runs"]
    port = argv[argv.index("--port") + 1]
    assert any(p.removesuffix("/tcp").endswith(":" + port) for p in board["ports"])


def test_gpu_is_opt_in():
    base = dt.load()
    gpu = dt.load(dt.GPU_COMPOSE_FILE)
    assert "deploy" not in base["services"]["learner"], "the base file must run on a host without a GPU"
    devices = gpu["services"]["learner"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["services"]["learner"]["build"]["args"]["TORCH_VARIANT"] == "cuda"
    # TensorBoard follows the learner's image so the CUDA override does not build a second torch image.
    assert gpu["services"]["tensorboard"]["image"] == gpu["services"]["learner"]["image"]
    assert gpu["services"]["tensorboard"]["build"]["args"] == gpu["services"]["learner"]["build"]["args"]
    assert set(gpu["services"]) <= set(base["services"])
    # One learner rank per reserved GPU, under torchrun; the rest of the command is the base file's.
    command = gpu["services"]["learner"]["command"]
    assert command.startswith("torchrun --standalone --nproc-per-node 1 -m learner --learner-ranks 1 ")
    four = dt.load(dt.GPU_COMPOSE_FILE, env={"AGALITE_GPU_COUNT": "4"})["services"]["learner"]
    assert four["command"].startswith("torchrun --standalone --nproc-per-node 4 -m learner --learner-ranks 4 ")
    assert four["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "4"
    assert base["services"]["learner"]["command"].removeprefix("python -m learner") in command


# ---- checks by real Compose implementations, where one is installed -------------------------------------------------
def _runs(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _compose_clis() -> list[list[str]]:
    clis = []
    if shutil.which("docker") and _runs(["docker", "compose", "version"]):
        clis.append(["docker", "compose"])
    if shutil.which("docker-compose") and _runs(["docker-compose", "version"]):
        clis.append(["docker-compose"])
    return clis


@pytest.mark.parametrize(
    "files",
    [[dt.COMPOSE_FILE], [dt.COMPOSE_FILE, dt.GPU_COMPOSE_FILE], [dt.COMPOSE_FILE, dt.CURVE_FILE]],
    ids=["base", "with-gpu", "with-curve"],
)
def test_compose_cli_accepts_the_files(files):
    clis = _compose_clis()
    if not clis:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    for cli in clis:
        cmd = cli + [arg for f in files for arg in ("-f", str(f))] + ["config", "--quiet"]
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, cwd=dt.REPO_ROOT, env=dt.process_env({})
        )
        assert result.returncode == 0, f"{' '.join(cli)} config: {result.stderr}"


def _stack_config(env: dict[str, str], *extra_files) -> dict | None:
    """`docker stack config` (Swarm's reading of the files, client-side) as a dict, or None when unavailable."""
    if not shutil.which("docker"):
        return None
    files = [arg for f in (dt.COMPOSE_FILE, *extra_files) for arg in ("-c", str(f))]
    try:
        result = subprocess.run(
            ["docker", "stack", "config", *files],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=dt.REPO_ROOT,
            env=dt.process_env(env),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0 and "unknown command" in result.stderr + result.stdout:
        return None
    assert result.returncode == 0, f"docker stack config rejects the compose file: {result.stderr}"
    import yaml

    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {
            "AGALITE_RUN_NAME": "exp 2",
            "AGALITE_CONTROL_PORT": "7007",
            "AGALITE_LEARNER_ARGS": "--total-steps 99 --env.kwargs '{\"a\": 1}'",
        },
    ],
    ids=["defaults", "overrides"],
)
def test_swarm_reads_the_file_as_these_tests_do(env):
    """`docker stack deploy` must accept the file, and its reading of commands and environments must be the one
    the local-process tests rely on (variable defaults, shell-like splitting of the learner's command)."""
    stack = _stack_config(env)
    if stack is None:
        pytest.skip("no docker CLI with `docker stack config` here")
    ours = dt.load(env=env)
    for name in SERVICES:
        theirs = stack["services"][name]
        assert theirs["command"] == dt.as_argv(ours["services"][name]["command"]), name
        assert {k: str(v) for k, v in (theirs.get("environment") or {}).items()} == dt.service_environment(
            ours["services"][name]
        ), name
    assert stack["services"]["actor"]["deploy"]["replicas"] == 2


def test_swarm_pins_the_learner_and_tensorboard_to_the_node_with_the_run_volume():
    stack = _stack_config({"AGALITE_LEARNER_NODE_CONSTRAINT": "node.hostname == gpu-1"}, dt.STACK_FILE)
    if stack is None:
        pytest.skip("no docker CLI with `docker stack config` here")
    for name in ("learner", "tensorboard"):
        assert stack["services"][name]["deploy"]["placement"]["constraints"] == ["node.hostname == gpu-1"]
    assert "placement" not in stack["services"]["actor"]["deploy"]
    assert stack["services"]["actor"]["deploy"]["replicas"] == 2  # the base file's count survives the merge
    defaults = dt.load(dt.STACK_FILE)
    assert defaults["services"]["learner"]["deploy"]["placement"]["constraints"] == ["node.role == manager"]
