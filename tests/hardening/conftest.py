"""Hands the live learner stack's fixtures (``live``, ``shared_live``, from ``tests.helpers.live_stack``) to the
probes."""

from tests.helpers.live_stack import live, shared_live  # noqa: F401 - fixtures: pytest finds them by name
