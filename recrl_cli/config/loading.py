"""Build a :class:`RunConfig` from defaults, a TOML file and ``--set section.key=value`` overrides.

Precedence (later wins): dataclass defaults < ``--config FILE`` < dedicated CLI options (``--seed``,
``--device`` ...) < ``--set``. Unknown sections or keys and values of the wrong type are
:class:`ConfigError`, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recrl_cli.config.fields import field_choices
from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig
from recrl_cli.errors import ConfigError, RecrlError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def section_classes(model_cls: type) -> dict[str, type]:
    """The dataclass of each config section, with ``model`` supplied by the algorithm."""
    return {"data": DataConfig, "train": TrainConfig, "model": model_cls}


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML experiment file into a nested dict."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def parse_override(text: str) -> tuple[str, str, str]:
    """Split ``section.key=value`` into its three parts."""
    key, sep, value = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        raise ConfigError(f"--set expects section.key=value (e.g. train.lr=0.001), got '{text}'")
    return section, name, value.strip()


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a TOML value or an override string to the field's declared type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return coerce(value, inner[0], where)
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if isinstance(value, str):
            items = [v for v in (s.strip() for s in value.split(",")) if v]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        return tuple(coerce(v, item_type, where) for v in items)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if annotation is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if annotation is str:
            return str(value)
    except (TypeError, ValueError):
        name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"{where}: expected {name}, got '{value}'") from None
    return value


def build_section(cls: type, values: Mapping[str, Any], section: str) -> Any:
    """Instantiate a config dataclass from a mapping, checking keys, types and choices."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    choices = field_choices(cls)
    kwargs = {}
    for key, raw in values.items():
        if key not in names:
            raise ConfigError(f"unknown key '{section}.{key}'; valid keys: {', '.join(names)}")
        value = coerce(raw, hints[key], f"{section}.{key}")
        allowed = choices.get(key)
        if allowed and value not in allowed:
            raise ConfigError(f"{section}.{key} must be one of {', '.join(allowed)}, got '{value}'")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except RecrlError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid [{section}] section: {exc}") from None


def resolve_config(
    algo: str,
    model_cls: type,
    *,
    config_file: Path | None = None,
    options: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Resolve the full configuration of one run.

    Args:
        algo: registered algorithm name.
        model_cls: the algorithm's config dataclass (the ``model`` section).
        config_file: optional TOML file with ``[data]``, ``[train]`` and ``[model]`` tables.
        options: dotted keys set by dedicated CLI options, e.g. ``{"train.seed": 3}``.
        overrides: ``section.key=value`` strings from ``--set``.
        defaults: dotted keys that replace the dataclass defaults (lowest precedence), e.g. the prepared
            dataset an algorithm reads by default.
    """
    classes = section_classes(model_cls)
    merged: dict[str, dict[str, Any]] = {name: {} for name in classes}
    for dotted, value in (defaults or {}).items():
        section, _, name = dotted.partition(".")
        merged[section][name] = value
    if config_file is not None:
        content = read_config_file(config_file)
        file_algo = content.pop("algo", algo)
        if file_algo != algo:
            raise ConfigError(f"{config_file} is for algorithm '{file_algo}', not '{algo}'")
        for section, table in content.items():
            if section not in classes:
                raise ConfigError(
                    f"unknown section [{section}] in {config_file}; valid: {', '.join(classes)}"
                )
            if not isinstance(table, dict):
                raise ConfigError(f"[{section}] in {config_file} must be a table")
            merged[section].update(table)
        for name in merged["train"]:
            check_train_field(algo, name, f"train.{name} in {config_file}")
    for dotted, value in (options or {}).items():
        section, _, name = dotted.partition(".")
        if section == "train":
            check_train_field(algo, name, f"--{name.replace('_', '-')}")
        merged[section][name] = value
    for text in overrides:
        section, name, value = parse_override(text)
        if section not in classes:
            raise ConfigError(f"unknown section '{section}' in --set {text}; valid: {', '.join(classes)}")
        if section == "train":
            check_train_field(algo, name, f"--set train.{name}")
        merged[section][name] = value
    built = {name: build_section(cls, merged[name], name) for name, cls in classes.items()}
    return RunConfig(algo=algo, data=built["data"], train=built["train"], model=built["model"])


def check_train_field(algo: str, name: str, given_as: str) -> None:
    """A one-line ConfigError when ``algo`` does not read ``train.<name>`` (an option is honoured or refused).

    An unknown field passes (:func:`build_section` reports it with the valid keys), and so does every field
    for a name the catalog does not know (configs built outside the registry, in tests).
    """
    from recrl_cli.algorithms import catalog

    if (
        algo in catalog.ENTRIES
        and name in catalog.TRAINER_WIDE + catalog.LOOP_FIELDS
        and not catalog.reads_train_field(algo, name)
    ):
        raise ConfigError(catalog.refusal(algo, name, given_as))


def replace_in(cfg: RunConfig, dotted: Mapping[str, Any]) -> RunConfig:
    """Return a copy of ``cfg`` with dotted keys replaced (used to expand ablation grids)."""
    sections = {"data": cfg.data, "train": cfg.train, "model": cfg.model}
    updates: dict[str, dict[str, Any]] = {}
    for key, value in dotted.items():
        section, _, name = key.partition(".")
        if section not in sections:
            raise ConfigError(f"unknown section '{section}' in '{key}'")
        if section == "train":
            check_train_field(cfg.algo, name, f"--{name.replace('_', '-')}")
        updates.setdefault(section, {})[name] = value
    for section, values in updates.items():
        current = {f.name: getattr(sections[section], f.name) for f in dataclasses.fields(sections[section])}
        current.update(values)
        sections[section] = build_section(type(sections[section]), current, section)
    return RunConfig(algo=cfg.algo, data=sections["data"], train=sections["train"], model=sections["model"])
