"""CurveZMQ in the compose stack, keys mounted as the README says (docker/curve.yml): the keyed actors join and
train; an actor without keys and one with a key pair the learner does not know, on the same network and ports,
never appear at the learner. Runs whenever a Docker engine answers (skips, saying why, when none does)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zmq.auth

from tests.helpers import docker_engine as de

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("docker-engine")]

IMAGE_UID = 10001  # the images' unprivileged user, who must be able to read the mounted keys
SEGMENTS_WHILE_WATCHED = 10  # the keyed actor's progress that bounds the window in which the others try to join


def _keys(root: Path) -> Path:
    """The README's layout: learner/ (server pair, authorized_clients/), actor/ (client pair, server.key), and a
    stranger/ with a client pair of its own that nobody authorised."""
    for who, name in (("learner", "server"), ("actor", "client"), ("stranger", "client")):
        (root / who).mkdir(parents=True)
        zmq.auth.create_certificates(root / who, name)
    (root / "learner" / "authorized_clients").mkdir()
    (root / "learner" / "authorized_clients" / "client.key").write_bytes((root / "actor" / "client.key").read_bytes())
    for who in ("actor", "stranger"):
        (root / who / "server.key").write_bytes((root / "learner" / "server.key").read_bytes())
    for path in [root, *root.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(path, IMAGE_UID, IMAGE_UID)
        else:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@pytest.fixture
def curve_stack(docker_images, tmp_path):
    keys = _keys(tmp_path / "keys")
    trajectory, policy, control, tensorboard = de.free_host_ports(4)
    env = {
        "AGALITE_LEARNER_IMAGE": docker_images["learner"],
        "AGALITE_ACTOR_IMAGE": docker_images["actor"],
        "AGALITE_PRESET": "test-tmaze-agalite",
        "AGALITE_RUN_NAME": "docker-curve",
        "AGALITE_LEARNER_ARGS": "--net.curve-dir /keys --total-steps 100000000",
        "AGALITE_KEYS": str(keys),
        "AGALITE_ACTORS": "1",
        "AGALITE_TRAJECTORY_PORT": str(trajectory),
        "AGALITE_POLICY_PORT": str(policy),
        "AGALITE_CONTROL_PORT": str(control),
        "AGALITE_TENSORBOARD_PORT": str(tensorboard),
    }
    project = de.ComposeProject(
        name=f"agalite-test-curve-{os.getpid()}",
        env=env,
        extra_files=[de.dt.DOCKER_DIR / "curve.yml"],
        run_name="docker-curve",
    )
    project.down()
    intruders = [f"{project.name}-nokey", f"{project.name}-stranger", f"{project.name}-keyed"]
    try:
        project.up("learner", "actor")
        yield project, keys, intruders
    finally:
        for name in intruders:
            de.docker("rm", "--force", name, check=False)
        project.down()
        for path in [keys, *keys.rglob("*")]:  # let pytest remove its temporary folder again
            if os.geteuid() == 0:
                os.chown(path, 0, 0)


def test_only_the_keyed_actor_joins(curve_stack, docker_images):
    stack, keys, (nokey, stranger, keyed) = curve_stack
    keyed_host = stack.inspect(stack.container("actor"), "{{.Config.Hostname}}")

    def keyed_feeds(s: dict) -> bool:
        return any(a["host"] == keyed_host and a["segments"] > 0 for a in s["actors"].values())

    stack.wait_status(keyed_feeds, "the keyed actor sending segments", de.START_TIMEOUT_S)

    common = [
        "--network", f"{stack.name}_default",
        "-e", "AGALITE_LEARNER_HOST=learner",
        "-e", f"AGALITE_TRAJECTORY_PORT={stack.env['AGALITE_TRAJECTORY_PORT']}",
        "-e", f"AGALITE_POLICY_PORT={stack.env['AGALITE_POLICY_PORT']}",
        "-e", f"AGALITE_CONTROL_PORT={stack.env['AGALITE_CONTROL_PORT']}",
    ]  # fmt: skip
    de.docker("run", "-d", "--name", nokey, "--hostname", "nokey", *common, docker_images["actor"])
    de.docker(
        "run", "-d", "--name", stranger, "--hostname", "stranger", *common,
        "-v", f"{keys / 'stranger'}:/keys:ro", "-e", "AGALITE_CURVE_DIR=/keys", docker_images["actor"],
    )  # fmt: skip
    # Control: the same `docker run` with the authorised key pair joins (so the two above are refused for their keys,
    # not for a wrong network or port).
    de.docker(
        "run", "-d", "--name", keyed, "--hostname", "keyed", *common,
        "-v", f"{keys / 'actor'}:/keys:ro", "-e", "AGALITE_CURVE_DIR=/keys", docker_images["actor"],
    )  # fmt: skip
    start = stack.status()
    assert start is not None
    seen_from = {a["host"]: a["segments"] for a in start["actors"].values()}[keyed_host]

    def watched_long_enough(s: dict) -> bool:
        segments = {a["host"]: a["segments"] for a in s["actors"].values()}
        return segments.get(keyed_host, 0) >= seen_from + SEGMENTS_WHILE_WATCHED and segments.get("keyed", 0) > 0

    end = stack.wait_status(watched_long_enough, "both keyed actors training", de.START_TIMEOUT_S)
    assert {a["host"] for a in end["actors"].values()} == {keyed_host, "keyed"}, end["actors"]
    assert end["live_actors"] == 2
    for name in (nokey, stranger):  # they were there trying the whole time
        assert stack.inspect(name, "{{.State.Running}}") == "true", de.docker("logs", name, check=False).stderr
