"""Config resolution: precedence, type coercion, unknown keys and bad values are one-line errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from recrl_cli.config.fields import field_help, param
from recrl_cli.config.loading import coerce, parse_override, replace_in, resolve_config
from recrl_cli.errors import ConfigError


@dataclass(frozen=True)
class ToyModel:
    width: int = param(8, help="Hidden width.")
    dims: tuple[int, ...] = param((4, 2), help="Layer sizes.")
    mode: str = param("a", help="Mode.", choices=("a", "b"))
    flag: bool = param(False, help="A switch.")


def test_defaults_and_help():
    cfg = resolve_config("toy", ToyModel)
    assert cfg.model == ToyModel()
    assert cfg.train.lr == 1e-3 and cfg.train.seed == 2022
    assert field_help(ToyModel)["width"] == "Hidden width."


def test_precedence_file_options_set(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('algo = "toy"\n[train]\nlr = 0.01\nseed = 5\n[model]\nwidth = 16\ndims = [3, 3]\n')
    cfg = resolve_config(
        "toy",
        ToyModel,
        config_file=path,
        options={"train.seed": 7},
        overrides=["model.width=32", "train.shuffle=off"],
    )
    assert cfg.train.lr == 0.01  # from the file
    assert cfg.train.seed == 7  # option beats file
    assert cfg.model.width == 32  # --set beats file
    assert cfg.model.dims == (3, 3)
    assert cfg.train.shuffle is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.depth=3", "unknown key 'model.depth'"),
        ("optim.lr=1", "unknown section 'optim'"),
        ("model.width=abc", "model.width: expected int"),
        ("model.width=1.5", "model.width: expected int"),
        ("model.mode=c", "model.mode must be one of a, b"),
        ("model.flag=maybe", "model.flag: expected bool"),
        ("train.lr=-1", "train.lr must be positive"),
        ("train.device=tpu", "train.device must be one of"),
        ("nonsense", "--set expects section.key=value"),
    ],
)
def test_bad_overrides_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("toy", ToyModel, overrides=[override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config("toy", ToyModel, config_file=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config("toy", ToyModel, config_file=bad)
    other = tmp_path / "other.toml"
    other.write_text('algo = "mmoe"\n')
    with pytest.raises(ConfigError, match="is for algorithm 'mmoe'"):
        resolve_config("toy", ToyModel, config_file=other)
    section = tmp_path / "section.toml"
    section.write_text("[optimizer]\nlr = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[optimizer\]"):
        resolve_config("toy", ToyModel, config_file=section)


def test_coerce_types():
    assert coerce("512,256", tuple[int, ...], "x") == (512, 256)
    assert coerce("1e-3", float, "x") == 0.001
    assert coerce("2e3", int, "x") == 2000
    assert coerce("yes", bool, "x") is True
    assert coerce("none", int | None, "x") is None
    assert parse_override("train.lr = 0.1") == ("train", "lr", "0.1")


def test_replace_in_revalidates():
    cfg = resolve_config("toy", ToyModel)
    new = replace_in(cfg, {"model.width": "64", "train.seed": 3})
    assert new.model.width == 64 and new.train.seed == 3 and cfg.model.width == 8
    with pytest.raises(ConfigError, match="unknown key"):
        replace_in(cfg, {"model.nope": 1})
