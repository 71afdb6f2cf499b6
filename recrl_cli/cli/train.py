"""``recrl train`` and ``recrl evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.markup import escape
from rich.table import Table

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
    make_tracker,
    preflight,
    resolve_local_references,
    resolve_references,
    run_config_from_cli,
)
from recrl_cli.config.schema import RunConfig

# torch, mlflow and the algorithms are imported in the command bodies, when work starts: `--help` and a
# one-line error never wait for them.

EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def config_table(cfg: RunConfig) -> Table:
    """Every setting the run reads (the ``[train]`` fields ``cfg.algo`` does not read are left out)."""
    from recrl_cli.algorithms.catalog import reads_train_field

    table = Table(title=escape(f"resolved config: {cfg.algo}"), show_lines=False)
    table.add_column("key", style="cyan")
    table.add_column("value")
    for section, values in cfg.to_dict().items():
        if isinstance(values, dict):
            for key, value in values.items():
                if section == "train" and not reads_train_field(cfg.algo, key):
                    continue
                table.add_row(f"{section}.{key}", escape(str(value)))
    return table


def metrics_table(metrics: dict[str, float], title: str, prefix: str = "", width: int | None = None
                  ) -> Table | Group:  # fmt: skip
    """Rows = tasks, columns = metrics, from keys ``[<split>/]<task>/<metric>``.

    A table wider than the terminal (``width``, default the console's: HRL-Rec's 15 list metrics of 7 policies)
    is turned round, one row per metric and one column per task or policy, so that no cell is cut to "…"; one
    still too wide is split into several turned tables of consecutive tasks (a Group)."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if prefix and not key.startswith(prefix):
            continue
        task, _, metric = key[len(prefix) :].rpartition("/")
        rows.setdefault(task, {})[metric] = value
    # Offline metrics first, then an RL agent's outcome and gap fractions; any other by name.
    order = ["auc", "gauc", "logloss", "s_logloss", "total_reward", "gap_fraction", "gap_vs_popular", "depth",
             "avg_reward"]  # fmt: skip
    names = {m for r in rows.values() for m in r}
    columns = sorted(names, key=lambda m: (order.index(m) if m in order else len(order), m))
    # A metric this row does not have (random's gap fraction) is "—", not a NaN that looks like a failure.
    cells = {
        task: [f"{values[c]:.4f}" if c in values else "—" for c in columns] for task, values in rows.items()
    }
    limit = width or console.width
    if table_width(["task", *columns], [[task, *row] for task, row in cells.items()]) <= limit:
        table = Table(title=escape(title))
        table.add_column("task", style="cyan")
        for column in columns:
            table.add_column(column, justify="right")
        for task, row in cells.items():
            table.add_row(escape(task), *row)
        return table
    # Turned round; tasks go into consecutive groups, each as many as fit beside the metric names (at least 1).
    groups: list[list[str]] = [[]]
    for task in cells:
        trial = [*groups[-1], task]
        header = ["metric", *trial]
        body = [[c, *(cells[t][i] for t in trial)] for i, c in enumerate(columns)]
        if groups[-1] and table_width(header, body) > limit:
            groups.append([task])
        else:
            groups[-1] = trial
    tables = []
    for g, tasks in enumerate(groups):
        table = Table(title=escape(title if g == 0 else f"{title} (continued)"))
        table.add_column("metric", style="cyan")
        for task in tasks:
            table.add_column(escape(task), justify="right")
        for i, column in enumerate(columns):
            table.add_row(escape(column), *(cells[t][i] for t in tasks))
        tables.append(table)
    return tables[0] if len(tables) == 1 else Group(*tables)


def table_width(header: list[str], rows: list[list[str]]) -> int:
    """Characters a rich table with these cells needs: each column's widest cell plus 1 of padding a side, and
    one border between and around the columns."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    return sum(widths) + 3 * len(widths) + 1


def swapped_note(cfg: RunConfig, split: str) -> str:
    """What a table titled ``split`` really holds under RMTL's faithful ``swap_val_test`` (bug 2: the reference
    early-stops on test.csv and reports val.csv as "test"); empty otherwise."""
    from recrl_cli.algorithms.rmtl.config import RMTLConfig, effective_switches

    if not isinstance(cfg.model, RMTLConfig) or not effective_switches(cfg.model)["swap_val_test"]:
        return ""
    other = {"test": "val", "val": "test"}[split]
    return f" — faithful swap_val_test: rows of the {other} split"


def comparison_table(metrics: dict[str, float], split: str, title: str) -> Table:
    """Base (``pretrained/<split>/...``) next to the final model (``<split>/...``) on the same rows."""
    table = Table(title=escape(f"{title} [{split}]"))
    for column in ("task", "metric", "base", "final", "Δ"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    prefix = f"pretrained/{split}/"
    for key, base in metrics.items():
        final = metrics.get(f"{split}/{key[len(prefix) :]}")
        if not key.startswith(prefix) or final is None:
            continue
        task, _, metric = key[len(prefix) :].rpartition("/")
        if metric == "gauc":
            continue  # keep the table to the metrics the RMTL paper reports
        # AUC is better higher, the loglosses lower: colour the change by whether it helps.
        better = (final > base) if metric.endswith("auc") else (final < base)
        colour = "green" if better else ("red" if final != base else "dim")
        table.add_row(
            escape(task), metric, f"{base:.4f}", f"{final:.4f}", f"[{colour}]{final - base:+.4f}[/]"
        )
    return table


def train(
    ctx: typer.Context,
    algo: Annotated[str, typer.Argument(help="Registered algorithm, e.g. mmoe (see `recrl algos`).")],
    config: ConfigOpt = None,
    sets: SetOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Prepared dataset directory (default data.prepared_dir).")
    ] = None,
    experiment: ExperimentOpt = None,
    tracking_uri: TrackingUriOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run of this exact configuration.")
    ] = False,
    name: Annotated[
        str | None,
        typer.Option("--name", help="MLflow run name (default: ALGO[-BASE]-seedN, e.g. rmtl-mmoe-seed0)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Train a configuration that already has a run in --runs-dir again, replacing its files "
            "(without it that is refused, never silently replaced).",
        ),
    ] = False,
    runs_dir: Annotated[
        Path, typer.Option("--runs-dir", help="Where checkpoints and local copies of artifacts go.")
    ] = Path("runs"),
    tags: TagOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and exit.")] = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            help="Data-parallel processes on this machine (torchrun; gloo on CPU, NCCL with one GPU each). "
            "MTL bases and rmtl only.",
        ),
    ] = 1,
) -> None:
    """Train an algorithm on a prepared dataset, evaluate it on val and test, and log it to MLflow.

    Any option of the algorithm's config can be given directly, e.g. `--expert-num 4` or `--lr 0.003`
    (`recrl train ALGO --help` lists them); `--set section.key=value` does the same with an explicit section.
    An option the algorithm does not use is refused, never ignored.
    """
    cfg = run_config_from_cli(
        algo,
        config=config,
        sets=sets,
        extra=parse_extra_options(ctx.args),
        seed=seed,
        device=device,
        data_dir=data,
    )
    user_tags = parse_tags(tags)
    cfg = resolve_local_references(cfg, runs_dir, required=not dry_run)
    if dry_run:
        console.print(config_table(cfg))
        return
    preflight(cfg)
    if not resume and not force and not _torchrun_worker():
        refuse_existing_run(cfg, runs_dir)
    from recrl_cli.mtf.report import ranker_notice
    from recrl_cli.nets.allocator import retain_freed_cpu_memory
    from recrl_cli.pipeline import train_run
    from recrl_cli.tracking.server import redact
    from recrl_cli.training import distributed
    from recrl_cli.training.trainer import TrainingInterrupted

    if notice := ranker_notice(cfg.model):  # fusion without --ranker: said on the console, not only logged
        console.print(f"[yellow]{escape(notice)}[/]")
    if nproc != 1 and not distributed.launched_by_torchrun():
        # Checked here, so that a bad value never starts a process group.
        _launch_data_parallel(ctx, nproc, cfg, algo, config, sets, seed, device, data, experiment,
                              tracking_uri, resume, runs_dir, name, force, tags)  # fmt: skip
        return
    main = _torchrun_rank() == 0  # a plain process is rank 0 too
    # A training command owns its process: keep freed tensor memory for the next step instead of
    # page-faulting it in afresh (5-13 % of a CPU step; benchmarks/RESULTS.md). No-op off glibc.
    retain_freed_cpu_memory()
    try:
        with distributed.process_group(cfg.train.device):
            if not main:  # rank 0 creates (and migrates) a new tracking store first
                distributed.barrier()
            tracker = make_tracker(tracking_uri)
            if main:
                distributed.barrier()
            cfg = resolve_references(cfg, tracker, runs_dir)
            exp = default_experiment(cfg, experiment)
            with graceful_interrupt() as stop, progress_bar() as progress:
                result = train_run(
                    cfg, tracker, experiment=exp, runs_root=runs_dir, resume=resume,
                    run_name=name or default_run_name(cfg), progress=progress if main else None, stop=stop,
                    extra_tags=user_tags,
                )  # fmt: skip
    except TrainingInterrupted as exc:
        if main:
            console.print(
                f"[yellow]interrupted at step {exc.global_step}; checkpoint saved. "
                f"Continue with the same command plus --resume.[/]"
            )
        if distributed.launched_by_torchrun():
            distributed.end_process(130)
        raise typer.Exit(code=130) from None
    if not main:  # rank 0 reports for the whole group
        distributed.end_process(0)
    has_val = any(k.startswith("val/") for k in result.metrics)  # RL agents have test metrics only
    which = "best validation epoch" if has_val else "exploration off, fresh users"
    if swapped_note(cfg, "test"):  # faithful swap_val_test: the epoch was chosen on the test split
        which = "epoch chosen on the test split"
    from recrl_cli.algorithms.registry import get_algorithm

    if get_algorithm(algo).family == "mtf":  # fusion runs: ES vs the learned policy, paired A/B changes
        from recrl_cli.mtf.report import fusion_table

        console.print(
            fusion_table(result.metrics, f"{algo}: simulated A/B and offline metrics (fresh users)")
        )
    else:
        console.print(
            metrics_table(
                result.metrics, f"{algo}: test metrics ({which}){swapped_note(cfg, 'test')}", "test/"
            )
        )
    for note in result.notes:  # e.g. an agent that does not beat the popular slate says so
        console.print(f"[yellow]note: {escape(note)}[/]")
    if has_val:
        console.print(
            metrics_table(result.metrics, f"{algo}: validation metrics{swapped_note(cfg, 'val')}", "val/")
        )
    if any(k.startswith("pretrained/test/") for k in result.metrics):
        title = f"{algo}: pretrained base vs final model{swapped_note(cfg, 'test')}"
        console.print(comparison_table(result.metrics, "test", title))
    if algo == "simulator":  # the world check (recrl_cli.sim.check), logged as eval/world/...
        from recrl_cli.cli.check import render_check
        from recrl_cli.sim.check import WorldCheck

        world = WorldCheck.from_metrics(result.metrics)
        if world is not None:
            render_check(world)
    console.print(
        f"MLflow run [bold]{result.run_id}[/] in experiment '{escape(exp)}' ({escape(redact(tracker.uri))}); "
        f"files in {escape(str(result.run_dir))}"
    )
    if distributed.launched_by_torchrun():  # a worker of --nproc N: see distributed.end_process
        distributed.end_process(0)


def default_run_name(cfg: RunConfig) -> str:
    """``mmoe-seed0``, ``rmtl-mmoe-seed0``, ``rmtl-mmoe-faithful-seed0``: what the run is, readable in the MLflow
    UI (the key is a tag). The faithful preset is named, so that the README's default and faithful runs of one
    algorithm never share a name (``--critics NAME`` would be ambiguous)."""
    base = getattr(cfg.model, "base", "") if cfg.algo == "rmtl" else ""
    faithful = "faithful" if getattr(cfg.model, "faithful", False) else ""
    return "-".join(p for p in (cfg.algo, base, faithful, f"seed{cfg.train.seed}") if p)


def refuse_existing_run(cfg: RunConfig, runs_dir: Path) -> None:
    """A one-line error when this configuration already has a run in ``runs_dir`` (finished or interrupted):
    re-running it would replace that run's files. ``--resume`` continues an interrupted one, ``--force`` replaces."""
    import json

    from recrl_cli.errors import ConfigError
    from recrl_cli.pipeline import run_key

    try:
        fingerprint = str(
            json.loads((Path(cfg.data.prepared_dir) / "manifest.json").read_text())["fingerprint"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return  # the run itself reports the data
    run_dir = Path(runs_dir) / run_key(cfg, fingerprint)
    try:
        state = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return
    run = state.get("mlflow_run_id", "?")
    if state.get("status") == "finished":
        raise ConfigError(
            f"this configuration already ran (MLflow run {run}, files in {run_dir}); change a setting, pass "
            f"--seed or --runs-dir, or --force to train it again and replace those files"
        )
    raise ConfigError(
        f"an interrupted run of this configuration is in {run_dir} (MLflow run {run}): continue it with --resume, "
        f"or pass --force to start over and replace it"
    )


def _torchrun_worker() -> bool:
    """Inside ``--nproc N``'s processes (the parent already checked; they must not refuse each other's run)."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _torchrun_rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


def _launch_data_parallel(
    ctx: typer.Context, nproc: int, cfg: RunConfig, algo: str, config: Path | None, sets: list[str] | None,
    seed: int | None, device: str | None, data: Path | None, experiment: str | None,
    tracking_uri: str | None, resume: bool, runs_dir: Path, name: str | None = None, force: bool = False,
    tags: list[str] | None = None,
) -> None:  # fmt: skip
    """Re-run this same command under torchrun in ``nproc`` processes (every option passed on unchanged)."""
    from recrl_cli.algorithms.registry import get_algorithm
    from recrl_cli.errors import ConfigError, RecrlError
    from recrl_cli.pipeline import DATA_PARALLEL_FAMILIES
    from recrl_cli.training import distributed

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    family = get_algorithm(algo).family
    if family not in DATA_PARALLEL_FAMILIES:
        raise ConfigError(f"--nproc > 1 trains the MTL bases and rmtl, not {algo} ({family})")
    if (
        cfg.data.dataset == "kuairand"
    ):  # the KuaiRand view is built whole in one process (data/kuairand_mtl.py)
        raise ConfigError(
            "--nproc > 1 trains on RetailRocket's prepared splits; train on KuaiRand in one process"
        )
    if distributed.backend_for(cfg.train.device) == "nccl":
        import torch

        if torch.cuda.device_count() < nproc:
            raise ConfigError(
                f"--nproc {nproc} with CUDA needs {nproc} GPUs; {torch.cuda.device_count()} found"
            )
    args = ["train", algo]
    args += ["--config", str(config)] if config else []
    for item in sets or []:
        args += ["--set", item]
    for item in tags or []:
        args += ["--tag", item]
    options = {"--seed": seed, "--device": device, "--data": data, "--experiment": experiment,
               "--tracking-uri": tracking_uri, "--runs-dir": runs_dir, "--name": name}  # fmt: skip
    for flag, value in options.items():
        if value is not None:
            args += [flag, str(value)]
    args += ["--resume"] if resume else []
    args += ["--force"] if force else []
    code = distributed.launch(nproc, [*args, *ctx.args])
    if code == 130:
        raise typer.Exit(code=130)
    if code != 0:
        raise RecrlError(f"the {nproc} training processes failed (torchrun exit code {code}); see above")


def evaluate(
    source: Annotated[
        str, typer.Argument(help="An MLflow run id or run name, a run directory, or a model.pt file.")
    ],
    split: Annotated[str, typer.Option("--split", help="Split to score: train, val or test.")] = "test",
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Prepared dataset directory to score (default: where `recrl prepare` puts the kind of data the "
            "model was trained on).",
        ),
    ] = None,
    device: DeviceOpt = None,
    tracking_uri: TrackingUriOpt = None,
    experiment: Annotated[
        str | None,
        typer.Option(
            "--experiment",
            help="MLflow experiment of the evaluation run (default: the evaluated run's, nested under it; for a "
            "model from elsewhere recrl/<dataset>).",
        ),
    ] = None,
) -> None:
    """Score a trained model on a split of a prepared dataset, print AUC, GAUC, logloss and s-logloss, and log
    them as an MLflow run (nested under the evaluated run when the store holds it)."""
    from recrl_cli.data.manifest import open_prepared
    from recrl_cli.errors import ConfigError, DataError
    from recrl_cli.pipeline import evaluate_saved, load_saved_model, log_evaluation
    from recrl_cli.tracking.server import redact
    from recrl_cli.training.device import resolve_device

    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split must be train, val or test, got '{split}'")
    device_name = device or "auto"
    resolve_device(device_name)
    if data is not None and not (data / "manifest.json").is_file():  # fails before anything is downloaded
        raise DataError(f"no prepared dataset at {data} (no manifest.json); run `recrl prepare retailrocket` (MTL "
                        "bases, rmtl) or `recrl prepare kuairand` (the simulator)")  # fmt: skip
    if data is not None:
        open_prepared(data)  # a damaged dataset fails before anything is downloaded
    # A path is read directly; only a run id needs the tracking store (opened lazily: a lookup never creates one).
    trackers = []  # made once, when first needed: a failing evaluation of a local file creates no store

    def tracker():
        if not trackers:
            trackers.append(make_tracker(tracking_uri))
        return trackers[0]

    saved = load_saved_model(source, tracker)
    if data is None:  # the data of the kind this model was trained on, where `recrl prepare` writes it
        from recrl_cli.algorithms.catalog import DEFAULT_PREPARED, data_defaults, family_of

        # The MTL bases train on RetailRocket or KuaiRand: the kind this model was trained on.
        trained_on = (saved.get("config") or {}).get("data", {}).get("dataset")
        default = DEFAULT_PREPARED.get(trained_on) or data_defaults(saved["algo"])["data.prepared_dir"]
        data = Path(default)
        open_prepared(
            data, trained_on or family_of(saved["algo"]).dataset
        )  # a missing one's hint names the right `recrl prepare`
    metrics = evaluate_saved(saved, prepared_dir=data, split=split, device_name=device_name)
    console.print(metrics_table(metrics, f"{saved['algo']} on {data} [{split}]"))
    run_id, parent = log_evaluation(tracker(), saved, source, split=split, prepared_dir=data, metrics=metrics,
                                    experiment=experiment)  # fmt: skip
    under = f", nested under run {parent.run_id} ({escape(parent.name)})" if parent else ""
    console.print(f"MLflow run [bold]{run_id}[/]{under} ({escape(redact(tracker().uri))})")


train_command = friendly_errors(train)
evaluate_command = friendly_errors(evaluate)
