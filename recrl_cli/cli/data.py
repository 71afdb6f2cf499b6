"""``recrl synth`` and ``recrl prepare``: raw files in the public formats, then prepared parquet."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from recrl_cli.cli.common import SetOpt, console, friendly_errors, progress_bar, stops_cleanly
from recrl_cli.errors import ConfigError, RegistryError

DATASETS = ("retailrocket", "kuairand")
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace a non-empty --out folder that is not an earlier output of this command "
        "(never the raw input, a folder holding it, the current or the home directory).",
    ),
]
KUAIRAND_VERSIONS = ("pure", "1k", "27k")


def _check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise RegistryError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")


def synth(
    dataset: Annotated[
        str, typer.Argument(help="Dataset whose raw format to write: retailrocket or kuairand.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default datasets/raw/<dataset>).")
    ] = None,
    events: Annotated[
        int, typer.Option("--events", help="Number of events (real RetailRocket: 2756101).", min=100)
    ] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed (same seed → identical files).")] = 0,
    version: Annotated[
        str, typer.Option("--version", help="KuaiRand only: pure, 1k or 27k (file names and sizes).")
    ] = "pure",
    impressions: Annotated[
        int | None,
        typer.Option(
            "--impressions",
            help="KuaiRand only: standard-log rows (default: the version's real size).",
            min=100,
        ),
    ] = None,
    users: Annotated[
        int | None,
        typer.Option("--users", help="KuaiRand only: users (default: the version's real count).", min=10),
    ] = None,
    items: Annotated[
        int | None,
        typer.Option("--items", help="KuaiRand only: videos (default: the version's real count).", min=10),
    ] = None,
    item_text: Annotated[
        bool,
        typer.Option(
            "--item-text",
            help="Also write item text whose words carry the planted item quality "
            "(RetailRocket: item_text.csv; KuaiRand: kuairand_video_captions.csv).",
        ),
    ] = False,
    force: ForceOpt = False,
) -> None:
    """Write synthetic raw files in the exact public format, with planted ground truth beside them.

    The true per-event probabilities go to ground_truth.csv so that benchmarks can report the oracle
    (Bayes) AUC and logloss next to each model. RetailRocket's size is --events; KuaiRand's is
    --impressions / --users / --items for the chosen --version. An existing --out is replaced only
    when an earlier `recrl synth` of the same dataset wrote it (or with --force).
    """
    _check_dataset(dataset)
    out = out or Path("datasets/raw") / dataset
    if dataset == "kuairand":
        from recrl_cli.data.synth.kuairand import write_kuairand

        if version not in KUAIRAND_VERSIONS:
            raise ConfigError(f"--version must be one of {', '.join(KUAIRAND_VERSIONS)}, got '{version}'")
        if version == "27k" and impressions is None:
            raise ConfigError(
                "KuaiRand-27K at real size is 322 M log rows; pass --impressions N to choose a size"
            )
        with progress_bar() as progress:
            summary = write_kuairand(
                out, version=version, num_users=users, num_items=items, num_impressions=impressions,
                seed=seed, progress=progress, captions=item_text, force=force,
            )  # fmt: skip
    else:
        from recrl_cli.data.synth.retailrocket import write_retailrocket

        given = [f"--{n}" for n, v in (("impressions", impressions), ("users", users), ("items", items)) if v]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to kuairand; RetailRocket's size is --events")
        with progress_bar() as progress:
            summary = write_retailrocket(
                out, num_events=events, seed=seed, progress=progress, item_text=item_text, force=force
            )
    console.print(synth_table(summary, title=f"synthetic {dataset} raw files in {out}"))


# How each nested entry of write_retailrocket's summary is labelled and formatted.
_NESTED = {
    "rows": ("rows of {}", lambda v: f"{v:,}"),
    "event_mix": ("event mix: {}", lambda v: f"{100 * v:.2f} %"),
    "oracle_auc": ("oracle AUC: {}", lambda v: f"{v:.4f}"),
    "item_position_auc": ("item + position ceiling AUC: {}", lambda v: f"{v:.4f}"),
    "history_oracle_auc": ("history oracle AUC: {}", lambda v: f"{v:.4f}"),
    "positive_rate": ("positive rate: {}", lambda v: f"{v:.4f}"),
    "true_rate": ("true rate: {}", lambda v: f"{v:.4f}"),
}


def synth_table(summary: dict, title: str) -> Table:
    """Every entry of the synth summary: scalars as they are, nested ones (rows per file, event
    mix, oracle AUC per task) one row per key."""
    table = Table(title=escape(title))
    table.add_column("item", style="cyan")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key == "out_dir":
            continue  # already in the title
        if isinstance(value, dict):
            # An unlisted nested entry: a float still reads as 4 decimals, not Python's 17 digits.
            label, fmt = _NESTED.get(
                key, (f"{key}: {{}}", lambda v: f"{v:.4f}" if isinstance(v, float) else str(v))
            )
            for name, item in value.items():
                table.add_row(escape(label.format(name)), escape(fmt(item)))
        elif isinstance(value, float):
            table.add_row(escape(key.replace("_", " ")), f"{value:.4f}")
        elif isinstance(value, int):
            table.add_row(escape(key.replace("_", " ")), f"{value:,}")
        else:
            table.add_row(escape(key.replace("_", " ")), escape(str(value)))
    return table


def prepare(
    dataset: Annotated[str, typer.Argument(help="Dataset to prepare: retailrocket or kuairand.")],
    raw: Annotated[
        Path | None, typer.Option("--raw", help="Raw files (default datasets/raw/<dataset>).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default datasets/prepared/<dataset>[-<version>])."),
    ] = None,
    version: Annotated[str, typer.Option("--version", help="KuaiRand only: pure, 1k or 27k.")] = "pure",
    session_gap: Annotated[
        int | None,
        typer.Option("--session-gap", help="Inactivity gap in minutes that starts a new session (30)."),
    ] = None,
    session_key: Annotated[
        str | None,
        typer.Option(
            "--session-key",
            help="RetailRocket: gap (inactivity sessions) or visitor (one per visitor); KuaiRand: day or gap.",
        ),
    ] = None,
    min_count: Annotated[
        int | None,
        typer.Option("--min-count", help="Train count below which a value goes to the rare bucket (5)."),
    ] = None,
    memory_budget: Annotated[
        str | None,
        typer.Option(
            "--memory-budget",
            help="KuaiRand only: peak memory target such as 4GiB; user blocks are cut to fit it (27K out of core).",
        ),
    ] = None,
    sets: SetOpt = None,
    force: ForceOpt = False,
) -> None:
    """Turn raw files into chronological train/val/test parquet splits plus manifest.json.

    Written atomically: on any error, Ctrl-C or SIGTERM nothing is left at --out. An existing --out is
    replaced only when it holds an earlier preparation of the same dataset (or with --force; never the
    raw folder or a folder holding it). Other parameters can be set with
    --set name=value: RetailRocket split, price_buckets, min_session_items; KuaiRand n_core,
    history_length, val_per_user, test_per_user, min_train_share, chunk_rows, partitions.
    """
    from recrl_cli.config.loading import build_section

    _check_dataset(dataset)
    values: dict[str, object] = {}
    for name, value in (
        ("session_gap_minutes", session_gap),
        ("session_key", session_key),
        ("min_count", min_count),
        ("memory_budget", memory_budget),
    ):
        if value is not None:
            values[name] = value
    for text in sets or ():
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects name=value (e.g. split=0.7,0.15,0.15), got '{text}'")
        values[key.strip().removeprefix("prepare.")] = value.strip()
    raw = raw or Path("datasets/raw") / dataset
    if dataset == "kuairand":
        from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand

        params = build_section(KuaiRandPrepareParams, {"version": version, **values}, "prepare")
        out = out or Path("datasets/prepared") / f"kuairand-{params.version}"
        with progress_bar() as progress:
            manifest = prepare_kuairand(raw, out, params, progress=progress, force=force)
    else:
        from recrl_cli.data.prepare.retailrocket import RetailRocketPrepareParams, prepare_retailrocket

        params = build_section(RetailRocketPrepareParams, values, "prepare")
        out = out or Path("datasets/prepared") / dataset
        with progress_bar() as progress:
            manifest = prepare_retailrocket(raw, out, params, progress=progress, force=force)
    console.print(manifest_table(manifest, out))
    if "memory" in manifest:  # KuaiRand: how the out-of-core pass was cut
        mem = manifest["memory"]
        budget = f"{mem['budget_bytes'] / 2**30:.2f} GiB" if mem["budget_bytes"] else "none"
        console.print(f"memory: budget {budget}, {mem['blocks']} user blocks of <= {mem['largest_block_rows']:,} rows, "
                      f"{mem['partitions']} partitions, modelled peak {mem['estimated_peak_bytes'] / 2**30:.2f} GiB")  # fmt: skip
    console.print(params_table(params))


def params_table(params: object) -> Table:
    """The preparation parameters as a table (a tuple as a comma list), not a raw Python dict."""
    table = Table(title="preparation parameters", title_justify="left")
    table.add_column("parameter", style="cyan")
    table.add_column("value")
    for key, value in dataclasses.asdict(params).items():
        shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        table.add_row(key, escape(shown if shown != "" else "(none)"))
    return table


def manifest_table(manifest: dict, out: Path) -> Table:
    table = Table(title=escape(f"prepared {manifest.get('dataset')} → {out}"))
    tasks = manifest["tasks"]
    for column in ("split", "rows", "sessions", "users", *(f"{t} rate" for t in tasks)):
        table.add_column(column, justify="right")
    for split, info in manifest["splits"].items():
        rates = [f"{info['positive_rate'][t]:.4f}" for t in tasks]
        table.add_row(
            split, f"{info['rows']:,}", f"{info['sessions']:,}", f"{info.get('users', 0):,}", *rates
        )
    return table


synth_command = friendly_errors(stops_cleanly(synth))
prepare_command = friendly_errors(stops_cleanly(prepare))
