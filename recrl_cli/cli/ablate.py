"""``recrl ablate``: a study over a grid of config values × seeds, as nested MLflow runs."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from recrl_cli.algorithms import catalog
from recrl_cli.cli.common import (
    ConfigOpt,
    DeviceOpt,
    ExperimentOpt,
    SeedOpt,
    SetOpt,
    TagOpt,
    TrackingUriOpt,
    console,
    friendly_errors,
    graceful_interrupt,
    parse_extra_options,
    parse_tags,
    progress_bar,
)
from recrl_cli.cli.resolve import (
    default_experiment,
    dotted_key,
    make_tracker,
    negated_flag,
    precheck_options,
    preflight,
    resolve_local_references,
    resolve_references,
    run_config_from_cli,
)
from recrl_cli.config.schema import DataConfig, RunConfig, TrainConfig


def _is_tuple_field(cfg: RunConfig, dotted: str) -> bool:
    section, _, name = dotted.partition(".")
    cls = {"model": type(cfg.model), "train": TrainConfig, "data": DataConfig}[section]
    return typing.get_origin(typing.get_type_hints(cls).get(name)) is tuple


def study_axes(cfg: RunConfig, pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """``--expert-num 4,8`` → ``("model.expert_num", ["4", "8"])``; tuple fields split on ';'."""
    axes = []
    for name, raw in pairs:
        name, raw = negated_flag(name, raw, type(cfg.model))
        key = dotted_key(name, type(cfg.model))
        sep = ";" if _is_tuple_field(cfg, key) else ","
        axes.append((key, [v.strip() for v in raw.split(sep) if v.strip()]))
    return axes


# RL runs log test/<policy>/<metric> for the agent and the random, popular and oracle baselines: the table
# shows the agent's episode metrics and its gap fractions against random and popular (the baselines are in
# the CSV).
_RL_METRICS = "agent/total_reward,agent/depth,agent/gap_fraction,agent/gap_vs_popular"
# Fusion runs (UnifiedRL and mtf-*): the learned policy's A/B change vs ES and its offline metrics.
_MTF_METRICS = (
    "policy/reward,policy/reward_change_pct,policy/valid_consumption_change_pct,"
    "policy/watch_minutes_change_pct,policy/mtf_gauc_by_request,policy/ncis/request_reward"
)

# List-building agents (hrlrec) report list metrics of the agent and its gap fraction against popular on the list
# reward (baselines in the CSV).
_LIST_METRICS = (
    "agent/ctr,agent/clicks,agent/dwell,agent/ild,agent/novelty,agent/share_kl,agent/gap_vs_popular"
)


def study_split_note(cfg: RunConfig, axes: list[tuple[str, list[str]]]) -> str:
    """What the study's "test" rows hold under RMTL's faithful ``swap_val_test`` (bug 2: val rows): the note of
    :func:`recrl_cli.cli.train.swapped_note` when every variant swaps, a warning when only some do."""
    from recrl_cli.cli.train import swapped_note

    if note := swapped_note(cfg, "test"):
        return note
    if any(key in ("model.faithful", "model.swap_val_test") for key, _ in axes):
        return " — faithful / swap_val_test variants: rows of the val split"
    return ""


def _shown(metric: str, wanted: list[str]) -> bool:
    """``is_click/auc`` is shown for ``auc``; ``agent/depth`` for ``depth`` or ``agent/depth``."""
    return any(metric == w or metric.endswith("/" + w) for w in wanted)


def _fmt(mean: float, ci: float) -> str:
    if mean != mean:
        return "nan"
    return f"{mean:.4f}" if ci != ci else f"{mean:.4f} ± {ci:.4f}"


def ablate(
    ctx: typer.Context,
    algo: Annotated[str, typer.Argument(help="Registered algorithm to study (see `recrl algos`).")],
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per variant (train.seed + 0..N-1).")] = 1,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            help="Table columns (every metric is in the CSV): a name matches a metric or its /<name> ending. "
            "Default auc,s_logloss; RL agents agent/total_reward,agent/depth,agent/gap_fraction,agent/gap_vs_popular.",
        ),
    ] = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    data: Annotated[Path | None, typer.Option("--data", help="Prepared dataset directory.")] = None,
    experiment: ExperimentOpt = None,
    tracking_uri: TrackingUriOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="Name of the parent MLflow run.")] = None,
    tags: TagOpt = None,
    runs_dir: Annotated[
        Path, typer.Option("--runs-dir", help="Where checkpoints and study tables go.")
    ] = Path("runs"),
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="Where the runs execute: local (this machine) or ray (one Ray task per variant × seed; "
            "needs the `ray` extra).",
        ),
    ] = "local",
    jobs: Annotated[
        int, typer.Option("--jobs", help="--backend local: runs at once, each in its own process.")
    ] = 1,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="--backend ray: cluster address (`auto` = the running cluster); default: start a local one.",
        ),
    ] = None,
    cpus_per_task: Annotated[
        float, typer.Option("--cpus-per-task", help="--backend ray: CPUs each run reserves.")
    ] = 1.0,
    gpus_per_task: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-task",
            help="--backend ray: GPUs each run reserves (default 1 with --device cuda, else 0).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the shared resolved config and the runs the study would make, and exit."
        ),
    ] = False,
) -> None:
    """Run a study: every combination of `--<option> v1,v2,...` values × `--seeds N`.

    An option given one value (`--epochs 3`) applies to every variant.

    Each variant × seed is a nested MLflow run under one parent run; the table shows mean ± 95 % CI
    over seeds and the paired difference to the first (reference) variant. The table (CSV) and a bar
    chart (PNG) are saved on the parent run. Re-running the same command after an interruption skips
    the runs already finished. Example: `recrl ablate mmoe --expert-num 4,8 --seeds 3`.
    """
    pairs = parse_extra_options(ctx.args)
    user_tags = parse_tags(tags)
    catalog.entry(algo)
    precheck_options(
        algo, pairs, sets or ()
    )  # an unknown or refused option: one line before torch is imported
    from recrl_cli.errors import ConfigError
    from recrl_cli.nets.allocator import retain_freed_cpu_memory
    from recrl_cli.pipeline import train_run
    from recrl_cli.study import plan_study, run_study
    from recrl_cli.study_backends import make_backend
    from recrl_cli.training.distributed import launched_by_torchrun
    from recrl_cli.training.trainer import TrainingInterrupted

    if launched_by_torchrun():  # every process would run the whole study
        raise ConfigError(
            "recrl ablate spreads runs with --jobs or --backend ray; do not start it under torchrun"
        )

    pairs = parse_extra_options(ctx.args)
    catalog.entry(algo)
    precheck_options(
        algo, pairs, sets or ()
    )  # an unknown or refused option: one line before torch is imported
    cfg = run_config_from_cli(algo, config=config, sets=sets, seed=seed, device=device, data_dir=data)
    axes = study_axes(cfg, pairs)
    # An option with one value is a setting shared by every variant, not an axis: it stays out of the
    # variant names (`--epochs 3` does not make every variant "…,epochs=3").
    fixed = [(key, values[0]) for key, values in axes if len(values) == 1]
    axes = [(key, values) for key, values in axes if len(values) != 1]
    if fixed:
        cfg = run_config_from_cli(
            algo, config=config, sets=sets, extra=fixed, seed=seed, device=device, data_dir=data
        )
    # --simulator latest (or none given): the newest on this data (a dry run leaves a missing one as given)
    cfg = resolve_local_references(cfg, runs_dir, required=not dry_run)
    variants, _ = plan_study(cfg, axes, seeds)  # every variant's config is valid ...
    if dry_run:
        from recrl_cli.cli.train import config_table

        console.print(config_table(cfg))
        runs = [(v.name, cfg.train.seed + s) for v in variants for s in range(seeds)]
        for number, (variant, s) in enumerate(runs, 1):
            console.print(f"run {number} of {len(runs)}: {escape(variant)} seed={s}")
        return
    preflight(cfg)  # ... and device and data are there, before anything is tracked
    from recrl_cli.mtf.report import ranker_notice

    if notice := ranker_notice(cfg.model):
        console.print(f"[yellow]{escape(notice)}[/]")
    if gpus_per_task is None:
        gpus_per_task = 1.0 if cfg.train.device == "cuda" else 0.0
    runner = make_backend(
        backend, jobs=jobs, address=address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task
    )
    retain_freed_cpu_memory()  # as in `recrl train`: this process only trains
    tracker = make_tracker(tracking_uri)
    cfg = resolve_references(cfg, tracker, runs_dir)
    exp = default_experiment(cfg, experiment)

    current = {"run": ""}  # "run 3 of 9", put before the training bars' labels

    def announce(variant: str, s: int, skipped: bool, number: int, total: int) -> None:
        verb = "[dim]skip (finished)[/] " if skipped else ("" if runner is None else "[bold]submit[/] ")
        current["run"] = f"run {number} of {total}"
        console.print(f"{verb}[bold]{current['run']}[/]: {escape(variant)} seed={s}")

    def finished(variant: str, s: int, values: dict[str, float]) -> None:
        if runner is not None:  # runs elsewhere finish in any order: say which one is back
            auc = values.get("test/mean/auc")
            shown = f" (test mean AUC {auc:.4f})" if auc is not None else ""
            console.print(f"[green]done[/] {escape(variant)} seed={s}{shown}")

    try:
        with graceful_interrupt() as stop, progress_bar() as bars:

            def progress(label: str, done: int, total: int, status: str = "") -> None:
                bars(f"{current['run']} · {label}", done, total, status=status)

            result = run_study(
                cfg, axes, seeds=seeds, tracker=tracker, experiment=exp, train_fn=train_run,
                out_dir=runs_dir / "studies", study_name=name, on_run=announce,
                train_kwargs={"runs_root": runs_dir, "progress": progress, "stop": stop},
                backend=runner, on_result=finished, user_tags=user_tags,
            )  # fmt: skip
    except TrainingInterrupted:
        console.print("[yellow]study interrupted; run the same command again to finish it.[/]")
        raise typer.Exit(code=130) from None
    if metrics is None:
        from recrl_cli.algorithms.registry import get_algorithm

        family = get_algorithm(algo).family
        metrics = {"rl": _RL_METRICS, "mtf": _MTF_METRICS, "rl-list": _LIST_METRICS}.get(
            family, "auc,s_logloss"
        )
    if metrics == _MTF_METRICS:  # fusion: one row per policy (ES, fixed fusion, variants), changes vs ES
        from recrl_cli.mtf.report import study_rows, study_table

        variants = list(dict.fromkeys(r["variant"] for r in result.rows))
        title = f"{algo} study: simulated A/B over {seeds} seed(s) (mean ± 95% CI)"
        console.print(study_table(study_rows(result.per_run, variants, seeds), title))
        console.print(
            f"parent run [bold]{result.parent_run_id}[/] ({result.skipped} finished run(s) reused); "
            f"table: {escape(str(result.table_csv))}; plot: {escape(str(result.table_csv.parent))}/"
            "study_fusion_reward.png"
        )
        return
    wanted = [m.strip() for m in metrics.split(",") if m.strip()]
    table = Table(
        title=escape(f"{algo} study: test metrics over {seeds} seed(s) (mean ± 95% CI; Δ vs reference)"
                     f"{study_split_note(cfg, axes)}")
    )  # fmt: skip
    for column in ("metric", "variant", "mean ± CI", "Δ vs ref ± CI", "p"):
        table.add_column(column, justify="left" if column in ("metric", "variant") else "right")
    for row in result.rows:
        if not _shown(row["metric"].removeprefix("test/"), wanted):
            continue
        diff = "ref" if row["diff"] != row["diff"] else _fmt(row["diff"], row["diff_ci"])
        p = "" if row["p_value"] != row["p_value"] else f"{row['p_value']:.3f}"
        table.add_row(
            escape(row["metric"].removeprefix("test/")),
            escape(row["variant"]),
            _fmt(row["mean"], row["ci"]),
            diff,
            p,
        )
    console.print(table)
    console.print(
        f"parent run [bold]{result.parent_run_id}[/] ({result.skipped} finished run(s) reused); table: {escape(str(result.table_csv))}"
    )


ablate_command = friendly_errors(ablate)
