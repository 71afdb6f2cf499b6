"""The console table of a fusion run: ES next to the learned policy, with the paired A/B change."""

from __future__ import annotations

from rich.table import Table

from recrl_cli.mtf.evaluate import AB_METRICS

OFFLINE = ("mtf_gauc", "mtf_gauc_by_request", "ncis/session_return", "ncis/request_reward")


def fusion_table(metrics: dict[str, float], title: str, prefix: str = "test/") -> Table:
    """Rows = metrics; columns ES, policy, Δ % vs ES ± 95 % CI (A/B rows only)."""

    def get(key: str) -> float:
        return metrics.get(prefix + key, float("nan"))

    table = Table(title=title)
    for column in ("metric", "ES", "policy", "Δ % vs ES ± CI"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m in AB_METRICS:
        change = f"{get(f'policy/{m}_change_pct'):+.2f} ± {get(f'policy/{m}_change_ci'):.2f}"
        table.add_row(f"{m} / session", f"{get(f'es/{m}'):.3f}", f"{get(f'policy/{m}'):.3f}", change)
    for m in OFFLINE:
        table.add_row(m, f"{get(f'es/{m}'):.4f}", f"{get(f'policy/{m}'):.4f}", "")
    table.add_row("premise: dims within ±b", "", f"{get('policy/premise/share_dims_in_box'):.3f}", "")
    return table
