"""``recrl check simulator RUN``: the world check of a trained simulator (:mod:`recrl_cli.sim.check`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from recrl_cli.cli.common import DeviceOpt, RecrlGroup, TrackingUriOpt, console, friendly_errors
from recrl_cli.cli.resolve import make_tracker

check_app = typer.Typer(cls=RecrlGroup, help="Check that a simulated world can support the comparisons made in it.",
                        no_args_is_help=True)  # fmt: skip


def world_tables(check) -> list[Table]:
    """The check as rich tables: fit per behaviour, the headroom table(s)."""
    from recrl_cli.data.prepare.kuairand import BEHAVIOURS

    fit = Table(title="simulator vs data on held-out rows (val + test)")
    fit.add_column("behaviour", style="cyan")
    fit.add_column("AUC", justify="right")
    if check.truth_auc is not None:
        fit.add_column("truth AUC", justify="right")
    for name in ("predicted rate", "observed rate", "ratio", "positives"):
        fit.add_column(name, justify="right")
    for b in BEHAVIOURS:
        ratio = check.predicted_rate[b] / max(check.observed_rate[b], 1e-12)
        truth = [f"{check.truth_auc[b]:.4f}"] if check.truth_auc is not None else []
        fit.add_row(b, f"{check.auc[b]:.4f}", *truth, f"{check.predicted_rate[b]:.5f}",
                    f"{check.observed_rate[b]:.5f}", f"{ratio:.2f}", str(check.positives[b]))  # fmt: skip
    room = Table(
        title=f"headroom, whole-session env on fresh users: popular = {check.popular_gap:.0%} of the gap"
    )
    room.add_column("policy", style="cyan")
    for name in ("total reward", "depth", "reward / step", "sessions", "gap fraction"):
        room.add_column(name, justify="right")
    from recrl_cli.sim.check import gap_fraction

    for policy, v in check.headroom.items():
        room.add_row(policy, f"{v['total_reward']:.3f}", f"{v['depth']:.2f}", f"{v['avg_reward']:.4f}",
                     f"{v['sessions']:.0f}", f"{gap_fraction(check.headroom, 'total_reward', policy):.2f}")  # fmt: skip
    if check.fusion is None:
        return [fit, room]
    from recrl_cli.mtf.calibration import LABELS
    from recrl_cli.sim.check import fusion_gap_fraction

    lo, hi = check.fusion["random"]["avg_reward"], check.fusion["per_user"]["avg_reward"]
    lift = f"{hi / lo - 1:+.1%}" if lo > 0 else f"{hi - lo:+.4f}"
    fusion = Table(title=f"headroom, fusion env (simulator as ranker): per-user best {lift} per request over "
                         f"random fusion, best fixed fusion = {check.fusion_gap:.0%} of that gap")  # fmt: skip
    fusion.add_column("policy", style="cyan")
    for name in ("total reward", "depth", "reward / request", "sessions", "gap fraction (per request)"):
        fusion.add_column(name, justify="right")
    for policy, v in check.fusion.items():
        fusion.add_row(LABELS.get(policy, policy), f"{v['total_reward']:.3f}", f"{v['depth']:.2f}",
                       f"{v['avg_reward']:.4f}", f"{v['sessions']:.0f}",
                       f"{fusion_gap_fraction(check.fusion, policy):.2f}")  # fmt: skip
    return [fit, room, fusion]


def render_check(check) -> None:
    """Print the tables, the diversity and recovery lines and each warning (one line each)."""
    for table in world_tables(check):
        console.print(table)
    line = f"item encodings: mean pairwise cosine {check.item_cosine:.3f}"
    if check.interaction is not None:
        line += (
            f"; planted user × item variance of the click logit recovered: r² = {check.interaction['r2']:.3f}"
        )
    console.print(line)
    if check.fusion_note:
        console.print(f"note: {escape(check.fusion_note)}")
    for warning in check.warnings:
        console.print(f"[yellow]world check: {escape(warning)}[/]")
    if not check.warnings:
        console.print("[green]world check passed[/]")


def simulator(
    run: Annotated[str, typer.Argument(help="A simulator's MLflow run id, run directory or model.pt.")],
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Raw folder of `recrl synth kuairand` (its planted truth is compared)."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Env steps per headroom policy.")] = 100,
    data: Annotated[
        Path | None, typer.Option("--data", help="Prepared KuaiRand (default: the one it was trained on).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the env's users and draws.")] = 0,
    device: DeviceOpt = None,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Fit against the data (and the planted truth), headroom of random / popular / oracle (whole-session env)
    and of random / best fixed / per-user best fusion (fusion env), item diversity; a one-line warning for each
    comparison the world cannot support."""
    from recrl_cli.errors import ConfigError
    from recrl_cli.pipeline import load_saved_model
    from recrl_cli.sim.check import check_world
    from recrl_cli.sim.data import load_kuairand_data
    from recrl_cli.sim.train import load_response_model
    from recrl_cli.training.device import resolve_device

    dev = resolve_device(device or "auto")
    saved = load_saved_model(run, lambda: make_tracker(tracking_uri))
    if saved.get("algo") != "simulator":
        raise ConfigError(f"{run} is a {saved.get('algo')} run; `recrl check simulator` needs a simulator")
    exported = saved["exported"]
    model = load_response_model(exported, dev)
    prepared = Path(data) if data is not None else Path(exported["prepared_dir"])
    check = check_world(model, load_kuairand_data(prepared, dev), truth_dir=truth, steps=steps, seed=seed)
    render_check(check)


check_app.command("simulator")(friendly_errors(simulator))
