"""Helpers shared by the test folders, imported by package path (``from tests.helpers.messages import ...``):
message builders, small exported models and policy files, the compose-file and Docker-engine helpers, and the live
learner stack of the hardening probes. pytest puts the repository root on ``sys.path`` (``pythonpath`` in
pyproject.toml), so no folder edits ``sys.path`` itself."""
