"""Run configuration: presets, unknown keys, command-line overrides, env kwargs, and the two --help screens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from learner.cli import parse_config
from learner.config import (
    CONFIG_DIR,
    DEFAULT_ENT_COEF,
    DEFAULT_LR,
    DEFAULT_PRESET,
    RunConfig,
    available_presets,
    config_from_dict,
    load_config,
    load_preset,
    save_config,
)
from models.config import ModelConfig

REPO = Path(__file__).resolve().parents[2]


def test_presets_directory_has_the_default():
    assert DEFAULT_PRESET in available_presets()
    assert CONFIG_DIR == REPO / "configs"


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "configs").glob("*.toml")))
def test_every_preset_loads(name: str):
    cfg = load_preset(name)
    assert isinstance(cfg, RunConfig)
    raw = tomllib.loads((CONFIG_DIR / f"{name}.toml").read_text())
    # every value written in the file arrived in the config
    for key, value in raw.items():
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                got = getattr(getattr(cfg, key), sub_key)
                if sub_key == "kwargs":
                    assert json.loads(got) == sub_value
                else:
                    assert got == sub_value, f"{key}.{sub_key}"
        else:
            assert getattr(cfg, key) == value, key
    assert isinstance(cfg.env.kwargs_dict(), dict)
    assert cfg.model.kind in ("agalite", "galite", "gtrxl", "lstm", "gru")


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "configs").glob("*.toml")))
def test_every_preset_builds_its_env_and_model(name: str):
    """What the learner does at start-up; presets for optional env packages are skipped when those are absent."""
    from envs import env_spaces
    from models.registry import build_actor_critic

    cfg = load_preset(name)
    try:
        obs_space, act_space = env_spaces(cfg.env.id, **cfg.env.kwargs_dict())
    except ImportError as err:
        pytest.skip(f"optional environment package missing: {err}")
    model = build_actor_critic(cfg.model, obs_space, act_space)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_unknown_keys_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\] in config\.ppo"):
        config_from_dict({"ppo": {"learning_rate": 1e-3}})
    with pytest.raises(ValueError, match=r"unknown keys \['totl_steps'\] in config;"):
        config_from_dict({"totl_steps": 5})
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\] in config\.model"):
        config_from_dict({"model": {"colour": "blue"}})
    with pytest.raises(ValueError, match=r"config\.env must be a table"):
        config_from_dict({"env": "agalite/TMaze-v0"})


def test_unknown_key_in_a_preset_file_names_the_file(tmp_path, monkeypatch):
    import learner.config as config_module

    (tmp_path / "broken.toml").write_text("total_steps = 10\n[ppo]\nlrr = 0.1\n")
    monkeypatch.setattr(config_module, "CONFIG_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"unknown keys \['lrr'\] in configs/broken\.toml\.ppo"):
        config_module.load_preset("broken")
    with pytest.raises(ValueError, match="no preset 'nope'; available: broken"):
        config_module.load_preset("nope")


def test_config_json_round_trip(tmp_path):
    cfg = config_from_dict(
        {"total_steps": 123, "env": {"kwargs": {"corridor_length": 5}}, "model": {"kind": "gtrxl", "memory_len": 16}}
    )
    save_config(cfg, tmp_path / "config.json")
    again = load_config(tmp_path / "config.json")
    assert again == cfg
    assert again.env.kwargs_dict() == {"corridor_length": 5}
    assert again.model == ModelConfig(kind="gtrxl", memory_len=16)


def test_cli_overrides_the_preset():
    cfg = parse_config(
        [
            "--preset",
            "tmaze-agalite",
            "--total-steps",
            "1234",
            "--model.kind",
            "gtrxl",
            "--model.memory-len",
            "16",
            "--ppo.lr",
            "0.01",
            "--env.kwargs",
            '{"corridor_length": 4}',
            "--net.trajectory-port",
            "7001",
            "--no-weights-only-updates",
        ],
        "test",
    )
    base = load_preset("tmaze-agalite")
    assert cfg.total_steps == 1234
    assert cfg.model.kind == "gtrxl" and cfg.model.memory_len == 16
    assert cfg.ppo.lr == 0.01
    assert cfg.env.kwargs_dict() == {"corridor_length": 4}
    assert cfg.net.trajectory_port == 7001 and cfg.net.policy_port == base.net.policy_port
    assert cfg.weights_only_updates is False
    # untouched values keep the preset's, not the dataclass defaults
    assert cfg.segment_length == base.segment_length == 32
    assert cfg.model.d_model == base.model.d_model == 64
    assert cfg.ppo.gae_lambda == base.ppo.gae_lambda and cfg.ppo.max_grad_norm == base.ppo.max_grad_norm


@pytest.mark.parametrize(("kind", "lr"), [("gru", 1e-3), ("lstm", 1e-3), ("gtrxl", 3e-4)])
def test_another_model_kind_brings_its_own_constant_learning_rate(kind: str, lr: float):
    """A constant lr belongs to the preset's model and env; an explicit --ppo.lr always wins."""
    preset = ["--preset", "tmaze-agalite-paper"]  # a constant rate (1e-4), no KL target
    assert load_preset("tmaze-agalite-paper").ppo.lr_kl_target is None
    assert parse_config([*preset, "--model.kind", kind], "test").ppo.lr == DEFAULT_LR[kind] == lr
    assert parse_config([*preset, "--model.kind", kind, "--ppo.lr", "0.02"], "test").ppo.lr == 0.02
    assert parse_config(preset, "test").ppo.lr == load_preset("tmaze-agalite-paper").ppo.lr != DEFAULT_LR["agalite"]
    # another env: the preset's lr was tuned for the T-Maze, so the kind's default applies
    assert parse_config([*preset, "--env.id", "CartPole-v1"], "test").ppo.lr == DEFAULT_LR["agalite"]


@pytest.mark.parametrize("kind", ["gru", "lstm", "gtrxl", "galite"])
def test_another_model_kind_brings_its_own_entropy_bonus_and_a_flag_wins(kind: str):
    """The default preset's entropy bonus (0.03) was measured for its AGaLiTe; another kind keeps the 0.01 it was
    measured with, the saved config holds what was resolved, and an explicit flag always wins."""
    assert load_preset(DEFAULT_PRESET).model.kind == "agalite"
    assert (
        parse_config([], "test").ppo.ent_coef == load_preset(DEFAULT_PRESET).ppo.ent_coef == DEFAULT_ENT_COEF["agalite"]
    )
    cfg = parse_config(["--model.kind", kind], "test")
    assert cfg.ppo.ent_coef == DEFAULT_ENT_COEF[kind] != DEFAULT_ENT_COEF["agalite"]
    assert cfg.to_dict()["ppo"]["ent_coef"] == DEFAULT_ENT_COEF[kind]
    assert parse_config(["--model.kind", kind, "--ppo.ent-coef", "0.03"], "test").ppo.ent_coef == 0.03
    assert parse_config(["--model.kind", kind, "--ppo.ent-coef=0.005"], "test").ppo.ent_coef == 0.005
    # a preset of the same kind keeps its own value: the rule is about leaving the preset's kind
    assert (
        parse_config(["--preset", "tmaze-lstm-paper"], "test").ppo.ent_coef
        == load_preset("tmaze-lstm-paper").ppo.ent_coef
    )
    lstm_preset_agalite = parse_config(["--preset", "tmaze-lstm-paper", "--model.kind", "agalite"], "test")
    assert lstm_preset_agalite.ppo.ent_coef == DEFAULT_ENT_COEF["agalite"]


@pytest.mark.parametrize(("kind", "preserved"), [("agalite", True), ("gtrxl", True), ("gru", False), ("lstm", False)])
def test_the_value_preservation_default_follows_the_model_kind_and_a_flag_wins(kind: str, preserved: bool):
    """Measured per kind (docs/learning.md): on for the attention models, off for the recurrent ones; either flag
    overrides the kind's default, and the saved config holds what was resolved."""
    cfg = parse_config(["--model.kind", kind], "test")
    assert cfg.ppo.preserve_values is preserved
    assert cfg.to_dict()["ppo"]["preserve_values"] is preserved
    assert parse_config(["--model.kind", kind, "--ppo.preserve-values"], "test").ppo.preserve_values is True
    assert parse_config(["--model.kind", kind, "--ppo.no-preserve-values"], "test").ppo.preserve_values is False


def test_the_default_preset_adapts_its_learning_rate_for_every_kind_and_env():
    """The KL target is what makes one default fit every model kind and task: it stays when either changes."""
    target = load_preset("tmaze-agalite").ppo.lr_kl_target
    assert target is not None
    lr = load_preset("tmaze-agalite").ppo.lr
    for argv in ([], ["--model.kind", "gru"], ["--model.kind", "gtrxl"], ["--env.id", "CartPole-v1"]):
        cfg = parse_config(argv, "test")
        assert cfg.ppo.lr_kl_target == target and cfg.ppo.lr == lr  # the ceiling stays: the KL does the rest
    with pytest.raises(SystemExit) as info:
        parse_config(["--ppo.anneal-lr", "True"], "test")
    assert info.value.code == 2


def test_cli_picks_a_test_preset():
    cfg = parse_config(["--preset", "test-tmaze-gtrxl"], "test")
    assert cfg.model.kind == "gtrxl"
    assert cfg.model.memory_len > cfg.env.kwargs_dict()["corridor_length"]


@pytest.mark.parametrize("bad", ["{corridor_length: 4}", "[1, 2]", "", '"text"'])
def test_bad_env_kwargs_is_a_clear_error(bad: str, capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(["--env.kwargs", bad], "test")
    assert info.value.code == 2
    assert "env.kwargs must be a JSON object" in capsys.readouterr().err


def test_unknown_preset_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(["--preset", "no-such-preset"], "test")
    assert info.value.code == 2  # a command-line mistake, like an unknown env id or a bad flag
    err = capsys.readouterr().err
    assert "error: no preset 'no-such-preset'" in err
    assert DEFAULT_PRESET in err


def test_unknown_flag_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(["--total-stepz", "5"], "test")
    assert info.value.code != 0


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "module,expect",
    [
        ("learner", "--total-steps"),
        ("learner.launch", "--num-actors"),
        ("actor", "--learner-host"),
    ],
)
def test_help_exits_zero(module: str, expect: str):
    result = _run(["-m", module, "--help"])
    assert result.returncode == 0, result.stderr
    assert expect in result.stdout


def test_learner_bad_kwargs_exits_with_message():
    result = _run(["-m", "learner", "--env.kwargs", "not json", "--run-dir", "/nonexistent/never-created"])
    assert result.returncode != 0
    assert "env.kwargs must be a JSON object" in result.stderr
    assert not Path("/nonexistent/never-created").exists()


def test_image_observations_take_one_gradient_pass_per_batch_unless_a_flag_says_otherwise():
    """A pass through the CNN bounds a CPU learner (docs/learning.md): an image env outside the preset gets one epoch
    of one minibatch; vector envs, and either flag given, keep the preset's passes."""
    pytest.importorskip("minigrid")
    preset = load_preset(DEFAULT_PRESET).ppo
    assert (preset.epochs, preset.minibatches) != (1, 1)
    pixels = ["--env.id", "agalite/MiniGrid-MemoryS7-v0", "--env.kwargs", '{"view": "pixels"}']
    cfg = parse_config([*pixels, "--model.kind", "gru"], "test")
    assert (cfg.ppo.epochs, cfg.ppo.minibatches) == (1, 1)
    assert cfg.to_dict()["ppo"]["epochs"] == 1  # the saved config holds what was resolved
    one_hot = parse_config(["--env.id", "agalite/MiniGrid-MemoryS7-v0", "--model.kind", "gru"], "test").ppo
    assert (one_hot.epochs, one_hot.minibatches) == (preset.epochs, preset.minibatches)
    typed = parse_config([*pixels, "--ppo.epochs", "2"], "test").ppo
    assert (typed.epochs, typed.minibatches) == (2, preset.minibatches)
    typed = parse_config([*pixels, "--ppo.minibatches=2"], "test").ppo
    assert (typed.epochs, typed.minibatches) == (preset.epochs, 2)
    # an encoder that flattens the image is no CNN: the preset's passes stay
    flat = parse_config([*pixels, "--model.encoder", "mlp"], "test").ppo
    assert (flat.epochs, flat.minibatches) == (preset.epochs, preset.minibatches)


def test_a_preset_for_an_image_task_keeps_its_own_passes():
    pytest.importorskip("memory_gym")
    own = load_preset("mysterypath-agalite").ppo
    cfg = parse_config(["--preset", "mysterypath-agalite"], "test").ppo
    assert (cfg.epochs, cfg.minibatches) == (own.epochs, own.minibatches) != (1, 1)
