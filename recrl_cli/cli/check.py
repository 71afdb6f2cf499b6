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
    from recrl_cli.sim.check import fusion_gap_fraction, fusion_reading

    _, ceiling = fusion_reading(check.fusion)
    ranker = f"ranker {escape(check.fusion_ranker)}" if check.fusion_ranker else "simulator as ranker"
    fusion = Table(title=f"headroom, fusion env ({ranker}): {LABELS[ceiling]} {check.fusion_gain:+.1%} per request "
                         f"over the better of random and fixed fusion, best fixed fusion = {check.fusion_gap:.0%} of "
                         "the gap (expected reward on the same requests)")  # fmt: skip
    fusion.add_column("policy", style="cyan")
    columns = ("total reward", "depth", "reward / request", "sessions", "expected / request", "gap fraction")
    for name in columns:
        fusion.add_column(name, justify="right")
    for policy, v in check.fusion.items():
        expected = v.get("expected_reward", float("nan"))
        fusion.add_row(LABELS.get(policy, policy), f"{v['total_reward']:.3f}", f"{v['depth']:.2f}",
                       f"{v['avg_reward']:.4f}", f"{v['sessions']:.0f}", f"{expected:.4f}",
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
    run: Annotated[
        str, typer.Argument(help="A simulator's MLflow run id or run name, run directory or model.pt.")
    ],
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="Raw folder of `recrl synth kuairand` (its planted truth is compared)."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Env steps per headroom policy.")] = 100,
    data: Annotated[
        Path | None, typer.Option("--data", help="Prepared KuaiRand (default: the one it was trained on).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the env's users and draws.")] = 0,
    ranker: Annotated[
        str | None,
        typer.Option(
            "--ranker",
            help="MTL ranker the fusion rows fuse, as `recrl train unifiedrl --ranker` takes it: another "
            "simulator run (run id or name, run directory or model.pt) on the same data, taste-free (the default, "
            "said on the console: the simulator without its users' taste rows) or self (the simulator "
            "itself: an oracle ranker, no room for fusion).",
        ),
    ] = None,
    device: DeviceOpt = None,
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Fit against the data (and the planted truth), headroom of random / popular / oracle (whole-session env)
    and of random / best fixed / best per-request fusion / per-user best slate (fusion env, fusing ``--ranker``'s
    targets), item diversity; a one-line warning for each comparison the world cannot support."""
    from recrl_cli.errors import ConfigError
    from recrl_cli.mtf.ranker import BUILT_IN, built_in_ranker
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
    kuairand = load_kuairand_data(prepared, dev)
    if (ranker or "") in BUILT_IN:  # no saved ranker: what a fusion run without --ranker fuses, or self
        try:
            ranker_model, ranker_name = built_in_ranker(model, ranker or "")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not ranker:  # the visible counterpart of the fusion runs' notice
            console.print(f"[yellow]warning: no --ranker: the fusion rows fuse {ranker_name}, as a fusion run "
                          "without --ranker does; pass --ranker <another simulator run> to check a trained "
                          "MTL ranker[/]")  # fmt: skip
    else:
        r_saved = load_saved_model(ranker, lambda: make_tracker(tracking_uri))
        if r_saved.get("algo") != "simulator":
            raise ConfigError(
                f"--ranker {ranker} is a {r_saved.get('algo')} run; the ranker must be a simulator run"
            )
        if r_saved["exported"].get("dataset_fingerprint") != kuairand.fingerprint:
            raise ConfigError(f"--ranker {ranker} was trained on other data than {prepared}")
        ranker_model, ranker_name = load_response_model(r_saved["exported"], dev), ranker
        if ranker_model.num_items != model.num_items:
            raise ConfigError(
                f"--ranker {ranker} has {ranker_model.num_items} items, the simulator {model.num_items}"
            )
    if ranker_model is model:
        ranker_model, ranker_name = None, ""  # check_world: None = the simulator ranks for itself
    check = check_world(model, kuairand, truth_dir=truth, steps=steps, seed=seed, ranker=ranker_model,
                        ranker_name=ranker_name)  # fmt: skip
    render_check(check)


check_app.command("simulator")(friendly_errors(simulator))
