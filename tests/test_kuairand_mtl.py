"""The MTL bases and RMTL on KuaiRand (issue 17 item 4): the feature-row view of the prepared row table, its
history without future rows, and `recrl train mmoe` / `recrl train rmtl` end to end through the CLI."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from mlflow import MlflowClient

from recrl_cli.algorithms.rmtl.mdp import next_row_index
from recrl_cli.data.kuairand_mtl import (
    MTL_TASKS,
    history_codes,
    load_kuairand_mtl,
    mtl_fields,
    session_positions,
)
from recrl_cli.data.kuairand_tensors import load_feature_table, load_row_table
from recrl_cli.data.prepare.kuairand import BEHAVIOURS, KuaiRandPrepareParams, prepare_kuairand
from recrl_cli.data.synth.kuairand import write_kuairand
from tests.test_cli import TINY, ok, run_id_of, table_rows

pytestmark = pytest.mark.usefixtures("one_thread")
RMTL_TINY = [*TINY, "--critic-embed-dim", "8", "--critic-bottom-dims", "16", "--critic-tower-dims", "8",
             "--pretrain-epochs", "1", "--critic-epochs", "1", "--polish-epochs", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def kuairand(tmp_path_factory):
    root = tmp_path_factory.mktemp("kuairand-mtl")
    write_kuairand(root / "raw", num_users=60, num_items=40, num_impressions=3000, seed=5)
    prepare_kuairand(root / "raw", root / "prepared", KuaiRandPrepareParams(n_core=2))
    return root / "prepared"


def test_the_view_has_fields_tasks_sessions_and_positions(kuairand):
    data = load_kuairand_mtl(kuairand)
    table = load_row_table(kuairand)
    assert data.tasks == list(MTL_TASKS) and data.manifest["view"] == "mtl"
    names = data.feature_names
    assert names[:2] == ["item", "user"] and names[-2:] == [
        "first_tag",
        "tab",
    ]  # field 0 = item: history shares its rows
    h = data.history_length
    assert h == 10
    for name, split in data.splits.items():
        assert split.features.shape == (split.num_rows, len(names) + 2 * h), name
        cards = torch.tensor(data.cardinalities)
        assert bool(
            ((split.features[:, : len(names)] >= 0) & (split.features[:, : len(names)] < cards)).all()
        )
        # The feature row's item / user are the row table's; labels are its is_click and long_view.
        rows = torch.nonzero(table.split == {"train": 0, "val": 1, "test": 2}[name]).squeeze(1)
        assert torch.equal(split.features[:, 0], table.item[rows])
        assert torch.equal(split.features[:, 1], table.user[rows])
        want = table.labels[rows][:, [BEHAVIOURS.index(t) for t in MTL_TASKS]].float()
        assert torch.equal(split.labels, want)
        next_row_index(split.session_ids)  # RMTL's MDP: every session's rows contiguous (raises otherwise)
        assert int(split.positions.min()) >= 0
    train = data.splits["train"]
    same = train.session_ids[1:] == train.session_ids[:-1]
    assert torch.equal(
        train.positions[1:][same], train.positions[:-1][same] + 1
    )  # counts up within a session


def test_session_positions_and_history_codes():
    assert session_positions(torch.tensor([4, 4, 4, 7, 9, 9])).tolist() == [0, 1, 2, 0, 0, 1]
    feedback = torch.zeros(1, 3, 7)
    feedback[0, 1, 0] = 1  # a click
    feedback[0, 2, :2] = 1  # a click and a long view
    mask = torch.tensor([[False, True, True]])
    assert history_codes(feedback, mask, [0, 1]).tolist() == [[0, 2, 4]]


def test_history_holds_only_rows_of_earlier_requests(kuairand):
    """No leakage: a row's history is rows of the same user shown in earlier requests, and changing every row
    of the same or a later request (items and labels) leaves the row's features unchanged."""
    table = load_row_table(kuairand)
    users, items = load_feature_table(kuairand, "users"), load_feature_table(kuairand, "items")
    task_index = [BEHAVIOURS.index(t) for t in MTL_TASKS]
    h = 10
    rows = torch.arange(table.num_rows)
    features = mtl_fields(table, users, items, rows, task_index, h)
    f = features.shape[1] - 2 * h
    hist_items, codes = features[:, f : f + h], features[:, f + h :]
    # Count check: exactly min(H, rows of earlier requests) real history rows, the most recent last.
    n = table.request_pos.clamp(max=h)
    assert torch.equal((codes > 0).sum(1), n)
    assert int((table.request_pos < table.user_pos).sum()) > 0  # requests with several rows are in the data
    # One target per user (its middle row); perturb every other row of that user at or after its request.
    start, pos = table.user_start, table.user_pos
    last = torch.zeros_like(start).scatter_reduce(0, start, pos, "amax")[start]  # [N] user's last position
    target = pos == last // 2
    tgt_request = torch.zeros_like(start).scatter_reduce(0, start, torch.where(target, table.request_pos, -1),
                                                         "amax")[start]  # fmt: skip
    future = (table.user_pos >= tgt_request) & ~target
    assert int(future.sum()) > 0
    g = torch.Generator().manual_seed(0)
    item2 = torch.where(future, torch.randint(1, int(table.item.max()) + 1, (table.num_rows,), generator=g),
                        table.item)  # fmt: skip
    labels2 = torch.where(future[:, None], 1 - table.labels, table.labels)
    changed = dataclasses.replace(table, item=item2, labels=labels2)
    targets = torch.nonzero(target).squeeze(1)
    assert torch.equal(
        mtl_fields(changed, users, items, targets, task_index, h), features[targets]
    )  # same ids, same history items, same label codes
    assert not torch.equal(
        mtl_fields(changed, users, items, rows, task_index, h), features
    )  # the change shows
    assert torch.equal(hist_items == 0, codes == 0)


def _finite_task_metrics(metrics: dict[str, float], split: str = "test") -> None:
    for task in MTL_TASKS:
        for metric in ("auc", "logloss", "s_logloss"):
            value = metrics[f"eval/{split}/{task}/{metric}"]
            assert math.isfinite(value), (task, metric, value)
        assert 0.0 <= metrics[f"eval/{split}/{task}/auc"] <= 1.0


def test_train_mmoe_and_rmtl_on_kuairand_through_the_cli(
    cli, kuairand, mlflow_sqlite_uri, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    common = ["--data", kuairand, "--tracking-uri", mlflow_sqlite_uri]  # no --dataset: the manifest says
    client = MlflowClient(mlflow_sqlite_uri)

    out = ok(cli("train", "mmoe", "--epochs", "2", *TINY, *common))
    assert set(table_rows(out, "mmoe: test metrics")) == {*MTL_TASKS, "mean"}
    run = client.get_run(run_id_of(out))
    assert run.data.params["data.dataset"] == "kuairand" and run.data.tags["recrl.dataset"] == "kuairand"
    assert client.get_experiment(run.info.experiment_id).name == "recrl/kuairand"
    _finite_task_metrics(run.data.metrics)
    # The saved model scores the same rows again through `recrl evaluate` (the data's kind from the run).
    scored = ok(cli("evaluate", next(tmp_path.glob("runs/mmoe-*")), "--data", kuairand))
    auc = float(table_rows(scored, "mmoe on")["is_click"][0])
    assert auc == pytest.approx(run.data.metrics["eval/test/is_click/auc"], abs=1e-4)

    out = ok(cli("train", "rmtl", "--base", "mmoe", *RMTL_TINY, *common))
    assert {"is_click", "long_view", "mean"} == set(table_rows(out, "pretrained base vs final model [test]"))
    run = client.get_run(run_id_of(out))
    _finite_task_metrics(run.data.metrics)
    assert any(
        k.startswith("train/critics/") for k in run.data.metrics
    )  # the session MDP's critics were fitted


def test_faithful_rmtl_on_kuairand_labels_the_split_it_reports(
    cli, kuairand, mlflow_sqlite_uri, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    out = ok(cli("train", "rmtl", "--base", "mmoe", "--faithful", *RMTL_TINY, "--data", kuairand,
                 "--tracking-uri", mlflow_sqlite_uri))  # fmt: skip
    text = " ".join(out.split())  # rich wraps long titles
    assert (
        "rmtl: test metrics (epoch chosen on the test split) — faithful swap_val_test: rows of the val split"
        in text
    )
    assert "rmtl: validation metrics — faithful swap_val_test: rows of the test split" in text
    _finite_task_metrics(MlflowClient(mlflow_sqlite_uri).get_run(run_id_of(out)).data.metrics)


def test_data_parallel_on_kuairand_is_a_one_line_error(cli, kuairand, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli(
        "train",
        "mmoe",
        "--nproc",
        "2",
        *TINY,
        "--data",
        kuairand,
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'db'}",
    )
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1 and len(errors) == 1 and "one process" in errors[0], res.output
    assert not (tmp_path / "runs").exists()


def test_study_tables_say_when_test_rows_are_val_rows():
    """`recrl ablate rmtl`'s "test metrics" title under faithful swap_val_test (issue 17 item 6)."""
    from recrl_cli.algorithms.rmtl.config import RMTLConfig
    from recrl_cli.cli.ablate import study_split_note
    from recrl_cli.config.loading import resolve_config

    plain = resolve_config("rmtl", RMTLConfig)
    assert study_split_note(plain, [("model.lam", ["0.3", "0.7"])]) == ""
    assert "rows of the val split" in study_split_note(
        resolve_config("rmtl", RMTLConfig, options={"model.faithful": True}), []
    )
    assert "variants" in study_split_note(plain, [("model.faithful", ["true", "false"])])
