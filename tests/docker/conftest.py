"""Build the images once per test session for the tests that run them on a real Docker engine."""

import os
from collections.abc import Iterator

import pytest

from tests.helpers import docker_engine as de


@pytest.fixture(scope="session")
def docker_images() -> Iterator[dict[str, str]]:
    """Both images built from the working tree by `docker compose build` (layers cached by the engine, so a
    rebuild after a change redoes only what changed). Skips, saying why, when no engine answers."""
    problem = de.engine_problem()
    if problem is not None:
        pytest.skip(f"needs a Docker engine: {problem}")
    de.link_torch_wheels()
    env = {"AGALITE_LEARNER_IMAGE": de.LEARNER_IMAGE, "AGALITE_ACTOR_IMAGE": de.ACTOR_IMAGE}
    builder = de.ComposeProject(name=f"agalite-test-build-{os.getpid()}", env=env)
    builder.compose("build", "learner", "actor", timeout=de.BUILD_TIMEOUT_S)
    yield {"learner": de.LEARNER_IMAGE, "actor": de.ACTOR_IMAGE}
    # Only the tags go: the engine's build cache keeps the layers for the next session.
    de.docker("image", "rm", de.LEARNER_IMAGE, de.ACTOR_IMAGE, check=False)
