"""Ablation studies: a grid of variants × seeds as nested MLflow runs under one parent.

``recrl ablate <algo> --<param> v1,v2,... --seeds N`` expands the Cartesian product of the given
axes (the first value of each axis is the reference variant), trains every variant with seeds
``train.seed + 0 .. N-1``, and summarises each test metric as mean ± 95 % t-CI over seeds with
the paired difference to the reference (same seeds). Re-running an interrupted study skips
the variant × seed runs that already finished (found by their tags in MLflow) and resumes a
half-done one from its checkpoint.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recrl_cli.algorithms.catalog import family_of
from recrl_cli.config.loading import replace_in
from recrl_cli.config.schema import RunConfig
from recrl_cli.errors import ConfigError
from recrl_cli.evaluation.stats import mean_ci, paired_difference
from recrl_cli.reporting import plot_study_bars
from recrl_cli.tracking.base import SOURCE_NAME_TAG, Tracker

PARENT_TAG = "recrl.study_parent"
CHILD_TAG = "recrl.study_key"
VARIANT_TAG = "recrl.variant_key"


@dataclass(frozen=True)
class Variant:
    """One point of the grid: a display name and the dotted config keys it sets."""

    name: str
    overrides: dict[str, Any]


def expand_grid(axes: Sequence[tuple[str, Sequence[str]]]) -> list[Variant]:
    """Cartesian product of ``(dotted_key, values)`` axes; the first variant is the reference."""
    if not axes:
        return [Variant("default", {})]
    for key, values in axes:
        if not values:
            raise ConfigError(f"no values given for --{key.rpartition('.')[2].replace('_', '-')}")
        if len(set(values)) != len(values):
            raise ConfigError(f"duplicate values for {key}: {', '.join(values)}")
    variants = []
    for combo in itertools.product(*(values for _, values in axes)):
        overrides = {key: value for (key, _), value in zip(axes, combo, strict=True)}
        name = ",".join(f"{key.rpartition('.')[2]}={value}" for key, value in overrides.items())
        variants.append(Variant(name, overrides))
    return variants


@dataclass(frozen=True)
class StudyResult:
    parent_run_id: str
    rows: list[dict[str, Any]]  # one per (metric, variant): mean, ci, diff, diff_ci, p_value
    per_run: dict[tuple[str, int], dict[str, float]]
    skipped: int
    table_csv: Path


def study_key(base: RunConfig, axes: Sequence[tuple[str, Sequence[str]]], seeds: int) -> str:
    blob = json.dumps(
        {"base": base.to_dict(), "axes": list(axes), "seeds": seeds}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan_study(
    base: RunConfig, axes: Sequence[tuple[str, Sequence[str]]], seeds: int
) -> tuple[list[Variant], dict[tuple[str, int], RunConfig]]:
    """The variants and the config of every (variant, seed) run; ConfigError on any invalid one.

    Cheap, and called before anything is tracked, so a bad value fails before any compute is spent.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    variants = expand_grid(axes)
    configs = {
        (v.name, s): replace_in(base, {**v.overrides, "train.seed": base.train.seed + s})
        for v in variants
        for s in range(seeds)
    }
    return variants, configs


def run_study(
    base: RunConfig,
    axes: Sequence[tuple[str, Sequence[str]]],
    *,
    seeds: int,
    tracker: Tracker,
    experiment: str,
    train_fn: Callable[..., Any],
    out_dir: Path,
    study_name: str | None = None,
    on_run: Callable[[str, int, bool, int, int], None] | None = None,
    train_kwargs: Mapping[str, Any] | None = None,
    backend: Any = None,
    on_result: Callable[[str, int, Mapping[str, float]], None] | None = None,
    user_tags: Mapping[str, str] | None = None,
) -> StudyResult:
    """Run (or finish) a study; see the module docstring. ``train_fn`` is :func:`pipeline.train_run`.

    ``backend`` (:mod:`recrl_cli.study_backends`): run the unfinished variant × seed runs in other processes
    or on a Ray cluster; the driver logs each as a nested run when it finishes (``on_result`` is told).
    None: one after the other in this process, through ``train_fn``. ``user_tags`` (``--tag``) go on the study's
    run and on every run of it.
    """
    variants, configs = plan_study(base, axes, seeds)
    key = study_key(base, axes, seeds)
    previous = tracker.find_runs(experiment, {PARENT_TAG: key})
    per_run: dict[tuple[str, int], dict[str, float]] = {}
    skipped = 0
    name = study_name or f"ablate {base.algo} " + " ".join(f"{k}={'|'.join(v)}" for k, v in axes)
    with tracker.start_run(
        experiment=experiment,
        run_name=name,
        tags={
            PARENT_TAG: key,
            "recrl.algo": base.algo,
            "recrl.study": "true",
            SOURCE_NAME_TAG: f"recrl ablate {base.algo}",
            **(user_tags or {}),
        },
        resume_run_id=previous[0].run_id if previous else None,
    ) as parent_id:
        tracker.log_params({"study.axes": json.dumps(list(axes)), "study.seeds": str(seeds)})
        finished = {
            r.tags.get(VARIANT_TAG): r
            for r in tracker.find_runs(experiment, {CHILD_TAG: key})
            if r.status == "FINISHED" and r.parent_run_id == parent_id
        }
        todo = []
        total = len(variants) * seeds  # on_run(variant, seed, skipped, k, total): "run k of total"
        for number, (variant, s) in enumerate(((v, s) for v in variants for s in range(seeds)), start=1):
            vkey = f"{variant.name}|seed={s}"
            if vkey in finished:
                per_run[(variant.name, s)] = {
                    k.removeprefix("eval/"): v
                    for k, v in finished[vkey].metrics.items()
                    if k.startswith("eval/")
                }
                skipped += 1
                if on_run:
                    on_run(variant.name, s, True, number, total)
                continue
            if on_run:
                on_run(variant.name, s, False, number, total)
            tags = {**(user_tags or {}), CHILD_TAG: key, VARIANT_TAG: vkey, "recrl.variant": variant.name}
            if backend is not None:
                todo.append((variant.name, s, configs[(variant.name, s)], tags))
                continue
            result = train_fn(
                configs[(variant.name, s)],
                tracker,
                experiment=experiment,
                run_name=f"{variant.name} seed={s}",
                nested=True,
                resume="auto",
                extra_tags=tags,
                **(train_kwargs or {}),
            )
            per_run[(variant.name, s)] = dict(result.metrics)
            if on_result:
                on_result(variant.name, s, per_run[(variant.name, s)])
        if todo:
            _run_elsewhere(todo, backend, tracker, experiment, train_kwargs or {}, per_run, on_result)
        rows = summarise(per_run, [v.name for v in variants], seeds)
        out_dir = out_dir / key  # one directory per study: another study never overwrites this table
        out_dir.mkdir(parents=True, exist_ok=True)
        table_csv = out_dir / "study.csv"
        write_rows(rows, table_csv)
        tracker.log_artifact(table_csv)
        # One chart per headline metric: the family's (catalog.Family.headline: mean AUC, an agent's return,
        # a fusion policy's reward, HRL-Rec's CTR), and every task's mean AUC where there are several.
        headline = family_of(base.algo).headline
        charted = [headline, *(r["metric"] for r in rows if r["metric"].endswith("mean/auc"))]
        present = {r["metric"] for r in rows}
        for metric in (m for m in dict.fromkeys(charted) if m in present):
            png = out_dir / f"study_{metric.replace('/', '_')}.png"
            plot_study_bars([r for r in rows if r["metric"] == metric], metric, png, name)
            tracker.log_artifact(png)
        if any(r["metric"] == "test/policy/reward_change_pct" for r in rows):  # fusion: Δ vs ES, ES row
            from recrl_cli.mtf.report import plot_study, study_rows

            png = out_dir / "study_fusion_reward.png"
            plot_study(study_rows(per_run, [v.name for v in variants], seeds), png, name)
            tracker.log_artifact(png)
        tracker.log_metrics(
            {
                f"study/{metric_safe(r['variant'])}/{r['metric']}": r["mean"]
                for r in rows
                if r["mean"] == r["mean"]
            }
        )
    return StudyResult(parent_id, rows, per_run, skipped, table_csv)


def _run_elsewhere(todo, backend, tracker, experiment, train_kwargs, per_run, on_result) -> None:
    """Submit every (variant, seed, config, tags) at once; log each run as it finishes (driver only)."""
    from recrl_cli.study_backends import RunTask, replay

    runs_root = str(train_kwargs.get("runs_root", "runs"))
    cwd = str(Path.cwd())
    tasks = [
        RunTask(variant, s, cfg, experiment, f"{variant} seed={s}", tags, runs_root, cwd)
        for variant, s, cfg, tags in todo
    ]
    for outcome in backend.run(tasks):
        replay(outcome.record, tracker, experiment)
        per_run[(outcome.variant, outcome.seed_index)] = dict(outcome.metrics)
        if on_result:
            on_result(outcome.variant, outcome.seed_index, outcome.metrics)


def metric_safe(variant: str) -> str:
    """A variant name as MLflow accepts it in a metric key: "dropout=0.1,expert_num=4" ->
    "dropout:0.1 expert_num:4" (MLflow allows only alphanumerics and _ - . space : /)."""
    text = variant.replace("=", ":").replace(",", " ")
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", text)


def summarise(
    per_run: Mapping[tuple[str, int], Mapping[str, float]], variants: Sequence[str], seeds: int
) -> list[dict[str, Any]]:
    """Mean ± CI per (test metric, variant) and the paired difference to the first variant."""
    reference = variants[0]
    metrics = sorted({k for m in per_run.values() for k in m if k.startswith("test/")})
    rows = []
    for metric in metrics:
        ref_values = [per_run[(reference, s)].get(metric, float("nan")) for s in range(seeds)]
        for variant in variants:
            values = [per_run[(variant, s)].get(metric, float("nan")) for s in range(seeds)]
            mean, ci = mean_ci(values)
            if variant == reference:
                diff = diff_ci = p_value = float("nan")
            else:
                diff, diff_ci, p_value = paired_difference(values, ref_values)
            rows.append(
                {"metric": metric, "variant": variant, "n": seeds, "mean": mean, "ci": ci,
                 "diff": diff, "diff_ci": diff_ci, "p_value": p_value}
            )  # fmt: skip
    return rows


def write_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    fields = ["metric", "variant", "n", "mean", "ci", "diff", "diff_ci", "p_value"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
