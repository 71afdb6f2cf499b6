"""What a user reads of fusion runs: the console table of one run (ES, the learned policy and a fixed fusion, with
the paired A/B change), the table and the plot of a study (``recrl ablate unifiedrl``: one row per variant plus
ES and the fixed fusion, every change against ES), and the notice about the ranker in use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from recrl_cli.evaluation.stats import mean_ci
from recrl_cli.mtf.evaluate import AB_METRICS

OFFLINE = ("mtf_gauc", "mtf_gauc_by_request", "ncis/request_reward", "ncis/session_return")


def _cell(value: float, digits: int = 4, ess: float | None = None) -> str:
    """A number, or why there is none: NCIS has no estimate when no logged session lies within the kernel."""
    if value != value:
        return "n/a (ESS 0)" if ess == 0.0 else "n/a"
    return f"{value:.{digits}f}"


def fusion_table(metrics: dict[str, float], title: str, prefix: str = "test/") -> Table:
    """Rows = metrics; columns ES, policy, fixed fusion, Δ % vs ES ± 95 % CI (A/B rows only)."""

    def get(key: str) -> float:
        return metrics.get(prefix + key, float("nan"))

    sessions = get("ab/sessions")
    table = Table(
        title=title, caption=f"A/B: {sessions:.0f} paired sessions per policy (common random numbers)"
    )
    for column in ("metric", "ES", "policy", "Δ % vs ES ± CI", "fixed fusion", "fixed Δ % vs ES"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m in AB_METRICS:
        change = f"{get(f'policy/{m}_change_pct'):+.2f} ± {get(f'policy/{m}_change_ci'):.2f}"
        fixed = f"{get(f'fixed/{m}_change_pct'):+.2f} ± {get(f'fixed/{m}_change_ci'):.2f}"
        table.add_row(f"{m} / session", f"{get(f'es/{m}'):.3f}", f"{get(f'policy/{m}'):.3f}", change,
                      f"{get(f'fixed/{m}'):.3f}", fixed)  # fmt: skip
    for m in OFFLINE:
        ess = {"ncis/session_return": "ncis/session_ess", "ncis/request_reward": "ncis/request_ess"}.get(m)
        cells = [
            _cell(get(f"{who}/{m}"), ess=get(f"{who}/{ess}") if ess else None) for who in ("es", "policy")
        ]
        table.add_row(m, *cells, "", "", "")
    table.add_row("premise: dims within ±b", "", f"{get('policy/premise/share_dims_in_box'):.3f}", "", "", "")
    if prefix + "ptm/rounds_kept" in metrics:
        table.add_row("PTM rounds kept by the guard", "", f"{get('ptm/rounds_kept'):.0f}", "", "", "")
    return table


def ranker_notice(model: Any) -> str | None:
    """A console line when a fusion run has no separate ``--ranker``: without one it fuses the simulator's
    taste-free view (:mod:`recrl_cli.mtf.ranker`), with ``--ranker self`` the simulator's own targets (an oracle
    ranker, which leaves fusion no room); None when a ranker run is given or the run is not a fusion run."""
    from recrl_cli.mtf.ranker import SELF

    if not hasattr(model, "ranker") or not hasattr(model, "bounds"):
        return None
    ranker = getattr(model, "ranker", "")
    if ranker == SELF:
        return ("warning: --ranker self: the simulator ranks the candidates for itself (an oracle ranker: the best "
                "fusion per request is +0.3 % above the best fixed one, no room to compare fusion policies; the "
                "run logs ranker_is_simulator = 1).")  # fmt: skip
    if ranker:  # a ranker run, or taste-free asked for by name
        return None
    return (
        "warning: no --ranker: the fusion env ranks with the simulator's taste-free view (its copy without the "
        "users' taste rows, a stand-in MTL ranker; the simulator itself when it has no taste). Pass --ranker "
        "<another simulator run> to fuse a trained MTL ranker."
    )


# -- studies ---------------------------------------------------------------------------------------------------------
STUDY_COLUMNS = (("reward / session", "reward", ""), ("reward Δ % vs ES", "reward_change_pct", "%"),
                 ("valid cons. Δ %", "valid_consumption_change_pct", "%"),
                 ("watch Δ %", "watch_minutes_change_pct", "%"), ("MTF-GAUC (request)", "mtf_gauc_by_request", ""),
                 ("NCIS / request", "ncis/request_reward", ""), ("dims within ±b", "premise/share_dims_in_box", ""))  # fmt: skip


def study_rows(per_run: Mapping[tuple[str, int], Mapping[str, float]], variants: Sequence[str],
               seeds: int) -> list[dict[str, Any]]:  # fmt: skip
    """One row per policy of a fusion study: ES (μ_bp⁰ of the first variant's runs), the fixed fusion and every
    variant's learned policy. Values: key -> (mean, CI half-width) over seeds; with one seed the CI of a change
    is the run's own paired A/B CI. Every change is against ES, paired within a run (same sessions)."""

    def stat(runs: list[Mapping[str, float]], key: str) -> tuple[float, float]:
        values = [r.get(f"test/{key}", float("nan")) for r in runs]
        mean, ci = mean_ci(values)
        if len(runs) == 1 and key.endswith("_change_pct"):
            ci = runs[0].get(f"test/{key.removesuffix('_pct')}_ci", float("nan"))
        return mean, ci

    rows = []
    ref = [per_run[(variants[0], s)] for s in range(seeds) if (variants[0], s) in per_run]
    for label, who, runs in [("ES (μ_bp⁰)", "es", ref), ("fixed fusion", "fixed", ref),
                             *[(v, "policy", [per_run[(v, s)] for s in range(seeds) if (v, s) in per_run])
                               for v in variants]]:  # fmt: skip
        row: dict[str, Any] = {"variant": label}
        for _, key, _ in STUDY_COLUMNS:
            if who == "es" and key.endswith("_change_pct"):
                row[key] = (0.0, 0.0)  # the reference itself
            elif who == "fixed" and key not in ("reward",) and not key.endswith("_change_pct"):
                row[key] = (float("nan"), float("nan"))  # the fixed fusion has A/B metrics only
            else:
                row[key] = stat(runs, f"{who}/{key}")
        rows.append(row)
    return rows


def study_table(rows: Sequence[Mapping[str, Any]], title: str) -> Table:
    table = Table(title=escape(title), caption="Δ vs ES: paired within each run (the same sessions); ± is the 95 % "
                  "CI over seeds (one seed: the run's own A/B CI)")  # fmt: skip
    table.add_column("policy", justify="left")
    for name, _, _ in STUDY_COLUMNS:
        table.add_column(name, justify="right")
    for row in rows:
        cells = []
        for _, key, unit in STUDY_COLUMNS:
            mean, ci = row[key]
            if mean != mean:
                cells.append("")
            elif row["variant"].startswith("ES") and key.endswith("_change_pct"):
                cells.append("ref")
            else:
                digits = 2 if unit else (3 if key != "reward" else 2)
                fmt = f"{{:+.{digits}f}}" if unit else f"{{:.{digits}f}}"
                cells.append(fmt.format(mean) + ("" if ci != ci else f" ± {ci:.{digits}f}"))
        table.add_row(escape(str(row["variant"])), *cells)
    return table


def plot_study(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Two panels: the reward change vs ES (%, bars from 0 with 95 % CI; ES is the 0 line) and the reward per
    session of every policy (y-axis from 0, so the bars' heights compare)."""
    from recrl_cli.reporting import _pyplot

    plt = _pyplot()
    names = [str(r["variant"]) for r in rows]
    fig, (ax_d, ax_r) = plt.subplots(1, 2, figsize=(max(8.0, 1.6 * len(rows) + 4), 4.0))
    change = [r["reward_change_pct"] for r in rows]
    colours = ["#999999" if n.startswith(("ES", "fixed")) else "#4C72B0" for n in names]
    ax_d.bar(names, [m for m, _ in change], yerr=[0.0 if c != c else c for _, c in change], capsize=4,
             color=colours)  # fmt: skip
    ax_d.axhline(0.0, color="black", linewidth=0.8)
    ax_d.set(title="reward per session: Δ % vs ES (95 % CI)", ylabel="Δ % vs ES")
    reward = [r["reward"] for r in rows]
    ax_r.bar(names, [m for m, _ in reward], yerr=[0.0 if c != c else c for _, c in reward], capsize=4,
             color=colours)  # fmt: skip
    ax_r.set_ylim(bottom=0.0)
    ax_r.set(title="reward per session (95 % CI)", ylabel="reward / session")
    for ax in (ax_d, ax_r):
        ax.tick_params(axis="x", rotation=30)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
