"""`docker compose up` for real: the images built from the working tree, the stack trained, scaled, its learner
killed, stopped and started again, TensorBoard and the health checks, the exported policy played in the actor
image. Runs whenever a Docker engine answers (skips, saying why, when none does).

The tests share one compose project and run in order (one xdist group): each starts from the state the previous
one left. The learner trains the short test preset (configs/test-tmaze-agalite.toml) with a step budget it never
reaches here, so it is always running when a test looks at it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.error
import urllib.request

import pytest

from tests.helpers import docker_engine as de

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("docker-engine")]

PRESET = "test-tmaze-agalite"
RUN_NAME = "docker-test"
CHECKPOINT = "checkpoints/checkpoint.pt"
CHECKPOINT_INTERVAL_S = 3
# Generous bounds for conditions on a busy 2-core machine, not claims about speed.
TRAIN_TIMEOUT_S = 900
START_TIMEOUT_S = 300
SUCCESS = 0.85  # the test preset passes 0.9 within 80k steps; far above chance (0.5)
PLAY_AFTER_STEPS = 60_000
PLAY_EPISODES = 50


@pytest.fixture(scope="module")
def stack(docker_images):
    trajectory, policy, control, tensorboard = de.free_host_ports(4)
    env = {
        "AGALITE_LEARNER_IMAGE": docker_images["learner"],
        "AGALITE_ACTOR_IMAGE": docker_images["actor"],
        "AGALITE_PRESET": PRESET,
        "AGALITE_RUN_NAME": RUN_NAME,
        "AGALITE_LEARNER_ARGS": f"--total-steps 100000000 --checkpoint-interval-s {CHECKPOINT_INTERVAL_S}",
        "AGALITE_TRAJECTORY_PORT": str(trajectory),
        "AGALITE_POLICY_PORT": str(policy),
        "AGALITE_CONTROL_PORT": str(control),
        "AGALITE_TENSORBOARD_PORT": str(tensorboard),
    }
    project = de.ComposeProject(name=f"agalite-test-stack-{os.getpid()}", env=env, run_name=RUN_NAME)
    project.down()
    try:
        project.up()
        yield project
    finally:
        project.down()


def _running(project: de.ComposeProject, service: str) -> list[str]:
    return [c for c in project.containers(service) if project.inspect(c, "{{.State.Running}}") == "true"]


def test_actor_image_has_no_torch_and_runs_as_an_unprivileged_user(docker_images):
    image = docker_images["actor"]
    uid = de.docker("run", "--rm", image, "id", "-u").stdout.strip()
    assert uid.isdigit() and int(uid) != 0
    no_torch = de.docker("run", "--rm", image, "python", "-c", "import torch", check=False)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    # Everything the actor needs imports (a missing COPY would show here, not in a running stack).
    de.docker("run", "--rm", image, "python", "-c", "import actor.__main__, actor.play, envs, protocol")


def test_learner_image_holds_a_cpu_torch_and_the_build_check_knows_it(docker_images):
    script = (de.dt.DOCKER_DIR / "check_torch_variant.py").read_text()
    entry = 'if __name__ == "__main__":\n    sys.exit(main(sys.argv[1:]))\n'
    assert entry in script
    # One torch import in the image: the check the build ran passes as cpu and refuses the image as a CUDA one.
    probe = "import os\nprint('uid', os.getuid(), 'cpu', main(['cpu']), 'cuda', main(['cuda']))\n"
    code = script.replace(entry, "") + probe
    result = de.docker("run", "--rm", "-i", docker_images["learner"], "python", "-", input=code)
    uid = int(result.stdout.split("uid ")[1].split()[0])
    assert uid != 0
    assert "matches TORCH_VARIANT=cpu" in result.stdout and result.stdout.rstrip().endswith("cpu 0 cuda 1")
    assert "not a CUDA build" in result.stderr


def test_compose_up_trains(stack):
    first: dict = {}

    def progress(s: dict) -> bool:
        if s["success_rate"] is not None and not first:
            first.update(s)
        return bool(first) and s["env_steps"] > first["env_steps"] and (s["success_rate"] or 0.0) >= SUCCESS

    last = stack.wait_status(progress, f"success >= {SUCCESS} on {PRESET}", TRAIN_TIMEOUT_S)
    assert first["success_rate"] < last["success_rate"], (first, last)
    assert last["policy_version"] > first["policy_version"]
    assert last["live_actors"] == 2 and last["resumed"] is False


def test_health_checks_turn_healthy(stack):
    containers = {s: stack.containers(s) for s in ("learner", "actor", "tensorboard")}
    assert len(containers["actor"]) == 2

    def all_healthy() -> dict | None:
        states = {c: stack.inspect(c, "{{.State.Health.Status}}") for cs in containers.values() for c in cs}
        return states if set(states.values()) == {"healthy"} else None

    de.wait_for(all_healthy, "learner, actors and TensorBoard healthy", START_TIMEOUT_S, stack.report)


def test_tensorboard_answers_http(stack):
    url = f"http://127.0.0.1:{stack.env['AGALITE_TENSORBOARD_PORT']}/"

    def answer() -> int | None:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status
        except (urllib.error.URLError, OSError):
            return None

    assert de.wait_for(answer, f"TensorBoard at {url}", START_TIMEOUT_S, stack.report) == 200


def test_scale_to_three_actors(stack):
    stack.up("--scale", "actor=3", "--no-recreate")
    assert len(_running(stack, "actor")) == 3
    hosts = {stack.inspect(c, "{{.Config.Hostname}}") for c in stack.containers("actor")}

    def three_feeding(s: dict) -> bool:
        feeding = {a["host"] for a in s["actors"].values() if a["segments"] > 0 and a["seconds_since_seen"] < 10}
        return s["live_actors"] == 3 and feeding == hosts

    stack.wait_status(three_feeding, "3 live actors sending segments", START_TIMEOUT_S)


def test_learner_killed_from_the_host_is_restarted_and_resumes(stack):
    learner = stack.container("learner")
    restarts = int(stack.inspect(learner, "{{.RestartCount}}"))
    resumes = len(stack.resumed_lines())
    before = stack.wait_status(lambda s: s["updates"] > 0, "a training learner", START_TIMEOUT_S)

    # A checkpoint written after this status holds at least its policy version: the learner must resume from it.
    def newer_checkpoint() -> bool | None:
        found = stack.read_run_file(CHECKPOINT)
        return True if found is not None and found[1] > before["time"] else None

    de.wait_for(newer_checkpoint, "a checkpoint newer than the last status", START_TIMEOUT_S, stack.report)
    pid = int(stack.inspect(learner, "{{.State.Pid}}"))
    try:
        os.kill(pid, signal.SIGKILL)  # what the OOM killer or a crash does; `docker kill` would be a manual stop
    except PermissionError:
        pytest.skip("killing a container's process from the host needs root on the engine's machine")

    de.wait_for(
        lambda: len(stack.resumed_lines()) > resumes or None,
        "the learner restarted by Docker to resume",
        START_TIMEOUT_S,
        stack.report,
    )
    assert int(stack.inspect(learner, "{{.RestartCount}}")) == restarts + 1
    assert stack.container("learner") == learner  # the same container, restarted by its policy
    version, steps = stack.resumed_lines()[-1]
    assert version >= before["policy_version"] and steps >= before["env_steps"]
    after = stack.wait_status(
        lambda s: s["learner_run_id"] != before["learner_run_id"] and s["policy_version"] >= version + 3,
        "the restarted learner training",
        START_TIMEOUT_S,
    )
    assert after["resumed"] is True and after["live_actors"] >= 2


def test_compose_stop_then_up_resumes_where_it_stopped(stack):
    resumes = len(stack.resumed_lines())
    stack.compose("stop", timeout=300)
    learner = stack.container("learner")
    # 137 would mean Docker's SIGKILL after the grace period: the learner did not finish its stop in time.
    assert stack.inspect(learner, "{{.State.Running}} {{.State.ExitCode}}") == "false 0", stack.report()
    stopped = stack.status()
    assert stopped is not None
    summary = stack.read_run_file("summary.json")
    assert summary is not None and '"interrupted": true' in summary[0]

    stack.up()
    de.wait_for(
        lambda: len(stack.resumed_lines()) > resumes or None, "the learner to resume", START_TIMEOUT_S, stack.report
    )
    # The final checkpoint at SIGTERM and the status written after it describe the same state: an exact resume.
    assert stack.resumed_lines()[-1] == (stopped["policy_version"], stopped["env_steps"])
    stack.wait_status(
        lambda s: s["learner_run_id"] != stopped["learner_run_id"] and s["policy_version"] > stopped["policy_version"],
        "training after the restart",
        START_TIMEOUT_S,
    )


def test_actor_play_plays_the_exported_policy_in_the_actor_image(stack, docker_images):
    # A trained policy first: success >= SUCCESS in the learner's own window, well past the steps the preset needs
    # (an early lucky window once exported a policy 18 updates old that walked into a wall forever).
    stack.wait_status(
        lambda s: s["env_steps"] >= PLAY_AFTER_STEPS and (s["success_rate"] or 0.0) >= SUCCESS,
        f"success >= {SUCCESS} after {PLAY_AFTER_STEPS} env steps",
        TRAIN_TIMEOUT_S,
    )
    # `compose stop` makes the learner export the final policy to the run volume (and write its summary).
    stack.compose("stop", timeout=300)
    summary = stack.read_run_file("summary.json")
    assert summary is not None
    info = json.loads(summary[0])
    result = de.docker(
        "run", "--rm", "-v", f"{stack.volume}:/runs:ro", docker_images["actor"],
        "python", "-m", "actor.play", f"/runs/{RUN_NAME}/policy.onnx", "--env", info["env_id"],
        "--env-kwargs", json.dumps(info["env_kwargs"]), "--episodes", str(PLAY_EPISODES),
        timeout=300,
    )  # fmt: skip
    # Sampled actions, as in training: greedy play of a policy that still hesitates can loop until the time limit.
    episodes = re.findall(r"^episode \d+: .* success (\S+)$", result.stdout, re.MULTILINE)
    assert len(episodes) == PLAY_EPISODES, result.stdout
    found = re.search(rf"mean over {PLAY_EPISODES} episodes: .* success (\S+)", result.stdout)
    assert found is not None, result.stdout
    mean = float(found.group(1))
    assert mean > 0.6, result.stdout  # a trained policy: far better than the memoryless 0.5
