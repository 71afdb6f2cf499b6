"""Early-stopping monitors (``train.monitor``): which validation metrics one can name and which way is better.

A monitor is ``<task or behaviour or mean>/<kind>``, e.g. ``mean/auc``, ``click/logloss``, ``mean/s_logloss``.
AUCs are better higher, loglosses lower: the trainer and RMTL's polish compare :func:`monitor_score`, which turns
every kind into "higher is better", so a logloss monitor is minimised, never maximised.
"""

from __future__ import annotations

from collections.abc import Sequence

from recrl_cli.errors import ConfigError

HIGHER_IS_BETTER = ("auc", "gauc")
LOWER_IS_BETTER = ("logloss", "s_logloss")
KINDS = HIGHER_IS_BETTER + LOWER_IS_BETTER


def monitor_kind(monitor: str) -> str:
    """``mean/s_logloss`` -> ``s_logloss`` (also through the guard's ``guarded/`` prefix)."""
    return monitor.rsplit("/", 1)[-1]


def check_monitor(monitor: str) -> None:
    """ConfigError unless ``monitor`` reads ``<name>/<kind>`` with a kind of :data:`KINDS`."""
    name, _, kind = monitor.rpartition("/")
    if not name or kind not in KINDS:
        raise ConfigError(
            f"train.monitor must be <task or mean>/<{'|'.join(KINDS)}> (e.g. mean/auc, mean/s_logloss), got {monitor!r}"
        )


def check_monitor_names(monitor: str, names: Sequence[str], kinds: Sequence[str] = KINDS) -> None:
    """ConfigError unless ``monitor`` names one of ``names`` (the run's tasks or behaviours) or ``mean`` and a kind
    the run's validation computes: checked when the algorithm is built, before any run is logged."""
    name, _, kind = monitor.rpartition("/")
    if name not in (*names, "mean") or kind not in kinds:
        raise ConfigError(
            f"train.monitor: {monitor!r} is not a validation metric of this run; name one of "
            f"{', '.join((*names, 'mean'))} and one of {', '.join(kinds)} (e.g. mean/{kinds[0]})"
        )


def monitor_score(monitor: str, value: float) -> float:
    """``value`` of ``monitor`` as a score where higher is better (a logloss negated); NaN stays NaN."""
    return -value if monitor_kind(monitor) in LOWER_IS_BETTER else value


def missing_monitor(monitor: str, metrics: dict[str, float]) -> ConfigError:
    """The one-line error for a monitor the run's validation does not produce (a task the data lack)."""
    named = sorted(
        k for k in metrics if monitor_kind(k) in KINDS and "/" in k and not k.startswith("guarded/")
    )
    return ConfigError(
        f"train.monitor: {monitor!r} is not a validation metric of this run; it has {', '.join(named)}"
    )
