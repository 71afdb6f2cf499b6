"""Model and checkpoint files as a user (or an attacker) can hand them to recrl: `recrl evaluate`, `--simulator`,
`--ranker`, `--critics` (a file or an MLflow run's artifact) and `--resume`.

Every case ends the same way (tests/faults.py): exit code 1, one `error: ...` line, no traceback, nothing left
behind, every file that existed before byte-for-byte unchanged. Files that carry a pickle payload (a
``__reduce__`` that would create a marker file) must be refused without running it; loadable but malformed
files must be named with what they lack; a dataset of the wrong kind must say which kind the algorithm needs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from faults import one_line_error, tree_digest
from mlflow import MlflowClient

from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
from recrl_cli.data.synth.kuairand import write_kuairand
from recrl_cli.errors import DataError
from recrl_cli.training.checkpoint import check_plain, read_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--epochs", "1", "--max-steps", "3", "--embed-dim", "4", "--bottom-dims", "8", "--tower-dims", "4", "--expert-num", "2",
        "--batch-size", "512", "--device", "cpu", "--threads", "1", "--seed", "5"]  # fmt: skip


class Payload:
    """A pickled object that, when unpickled by a trusting loader, writes ``marker`` (arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def evil_model(path: Path, marker: Path) -> Path:
    """A model.pt that looks like recrl's (algo, exported, ...) with the payload inside the export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"recrl_version": "0.1.0", "algo": "mmoe", "config": {}, "exported": Payload(marker)}, path)
    return path


# ---- shared files: a trained mmoe run (with an MLflow store), tiny prepared KuaiRand, payload runs ----------


@pytest.fixture(scope="module")
def world(tmp_path_factory, new_mlflow_db, cli, cli_dataset) -> dict:
    """Everything the cases read, made once: a real mmoe model (trained through the CLI into an MLflow store),
    prepared KuaiRand, and an MLflow run whose model artifact carries a payload."""
    root = tmp_path_factory.mktemp("faults-models")
    uri = new_mlflow_db(root / "store")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        args = ["train", "mmoe", "--data", cli_dataset.prepared, "--tracking-uri", uri, "--runs-dir",
                root / "runs", *TINY]  # fmt: skip
        result = cli(*args)
        assert result.exit_code == 0, result.output
    run_dir = next((root / "runs").glob("mmoe-*"))
    client = MlflowClient(uri)
    good_run = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    evil_run = client.create_run(
        client.get_experiment_by_name("recrl/retailrocket").experiment_id
    ).info.run_id
    evil_model(root / "evil-artifact" / "model.pt", root / "PWNED-FROM-MLFLOW")
    client.log_artifact(evil_run, str(root / "evil-artifact" / "model.pt"), "model")
    client.set_terminated(evil_run)
    empty_run = client.create_run(
        client.get_experiment_by_name("recrl/retailrocket").experiment_id
    ).info.run_id
    client.set_terminated(empty_run, "FAILED")  # a run that died before it saved a model
    kuairand = root / "kuairand"
    write_kuairand(kuairand / "raw", num_users=40, num_items=30, num_impressions=800, seed=7)
    prepare_kuairand(kuairand / "raw", kuairand / "prepared", KuaiRandPrepareParams(n_core=2))
    return {"root": root, "uri": uri, "rr": cli_dataset.prepared, "kr": kuairand / "prepared",
            "run_dir": run_dir, "model": run_dir / "model.pt", "good_run": good_run, "evil_run": evil_run, "empty_run": empty_run,
            "train_args": args}  # fmt: skip


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """An empty current directory; the default tracking store would be created here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def snapshot(*roots: Path) -> dict[str, object]:
    """Checksums of every file and the list of every directory under ``roots``."""
    return {str(r): (tree_digest(r), sorted(str(p) for p in r.rglob("*") if p.is_dir())) for r in roots}


def fails_cleanly(cli, world: dict, work: Path, *args: object, match: str) -> str:
    """Run ``recrl ARGS``; assert the one-line contract, the message, and that no file changed anywhere."""
    watched = (work, world["root"], world["rr"])
    before = snapshot(*watched)
    line = one_line_error(cli(*args))
    assert re.search(match, line), line
    assert snapshot(*watched) == before
    assert not any(p.name.startswith("PWNED") for r in watched for p in r.rglob("*"))
    return line


# ---- payloads: refused, never run ---------------------------------------------------------------------------


def test_the_payload_is_live_when_loaded_unsafely(tmp_path):
    """The guard against a vacuous test: a trusting load of the same file does run the code."""
    path = evil_model(tmp_path / "model.pt", tmp_path / "ran")
    torch.load(path, weights_only=False)
    assert (tmp_path / "ran").read_text() == "code ran"


def test_evaluate_refuses_a_model_file_with_a_payload(cli, world, work):
    path = evil_model(work / "model.pt", work / "PWNED")
    line = fails_cleanly(cli, world, work, "evaluate", path, "--data", world["rr"],
                         match=r"refused to load .*model\.pt: it holds Python objects \(exec\).*nothing in it was run")  # fmt: skip
    assert "older recrl or is not a recrl file" in line
    assert not (work / "PWNED").exists()


def test_evaluate_refuses_a_run_directory_with_a_payload(cli, world, work):
    evil_model(work / "run" / "model.pt", work / "PWNED")
    fails_cleanly(cli, world, work, "evaluate", work / "run", "--data", world["rr"], match=r"refused to load")
    assert not (work / "PWNED").exists()


def test_evaluate_refuses_a_payload_downloaded_from_mlflow(cli, world, work):
    fails_cleanly(cli, world, work, "evaluate", world["evil_run"], "--data", world["rr"],
                  "--tracking-uri", world["uri"], match=rf"refused to load the model of MLflow run {world['evil_run']}: it holds Python objects")  # fmt: skip
    assert not (world["root"] / "PWNED-FROM-MLFLOW").exists()


@pytest.mark.parametrize("algo", ["hac", "hrlrec", "unifiedrl"])
def test_simulator_with_a_payload_is_refused_before_anything_is_tracked(cli, world, work, algo):
    path = evil_model(work / "sim" / "model.pt", work / "PWNED")
    fails_cleanly(cli, world, work, "train", algo, "--simulator", path, "--data", world["kr"],
                  match=r"refused to load .*sim/model\.pt")  # fmt: skip
    assert not (work / "PWNED").exists() and not (work / "mlflow.db").exists()


def test_ranker_with_a_payload_is_refused(cli, world, work):
    good = work / "sim.pt"
    save_checkpoint(good, simulator_model())
    path = evil_model(work / "ranker.pt", work / "PWNED")
    fails_cleanly(cli, world, work, "train", "unifiedrl", "--simulator", good, "--ranker", path,
                  "--data", world["kr"], match=r"refused to load .*ranker\.pt")  # fmt: skip


def test_critics_file_with_a_payload_is_refused_before_anything_is_tracked(cli, world, work):
    path = evil_model(work / "critics.pt", work / "PWNED")
    fails_cleanly(cli, world, work, "train", "rmtl", "--critics", path, "--data", world["rr"],
                  match=r"model\.critics: refused to load .*critics\.pt")  # fmt: skip
    assert not (work / "mlflow.db").exists()


def test_critics_run_id_with_a_payload_is_refused_and_not_cached(cli, world, work):
    """The artifact is downloaded to runs/critics/<id>: refused, it is removed again (a later call would trust
    a cached file)."""
    fails_cleanly(cli, world, work, "train", "rmtl", "--critics", world["evil_run"], "--data", world["rr"],
                  "--tracking-uri", world["uri"], match=r"model\.critics: refused to load")  # fmt: skip
    assert not (world["root"] / "PWNED-FROM-MLFLOW").exists()


def _interrupted_run(world: dict, work: Path, checkpoint: object) -> Path:
    """A copy of the trained run's directory, marked as interrupted, with ``checkpoint`` as its checkpoint.pt
    (the run key is the same: same configuration, same data)."""
    runs = work / "runs"
    run_dir = runs / world["run_dir"].name
    run_dir.mkdir(parents=True)
    state = json.loads((world["run_dir"] / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**state, "status": "running"}))
    if isinstance(checkpoint, Path):
        evil_model(run_dir / "checkpoint.pt", checkpoint)
    else:
        save_checkpoint(run_dir / "checkpoint.pt", checkpoint)
    return runs


def _resume(world: dict, runs: Path) -> list[object]:
    args = list(world["train_args"])
    args[args.index("--runs-dir") + 1] = runs
    return [*args, "--resume"]


def test_resume_refuses_a_checkpoint_with_a_payload(cli, world, work):
    runs = _interrupted_run(world, work, work / "PWNED")
    fails_cleanly(cli, world, work, *_resume(world, runs), match=r"refused to load .*checkpoint\.pt")
    assert not (work / "PWNED").exists()


def test_old_pickled_objects_are_refused_with_a_retrain_hint(cli, world, work):
    """What an older or foreign writer may have pickled (a config object, a numpy array) is refused too."""
    from recrl_cli.config.schema import TrainConfig

    torch.save({"algo": "mmoe", "config": TrainConfig(), "exported": {}}, work / "old.pt")
    fails_cleanly(cli, world, work, "evaluate", work / "old.pt", "--data", world["rr"],
                  match=r"Python objects \(recrl_cli\.config\.schema\.TrainConfig\).*train it again")  # fmt: skip


# ---- loadable but malformed saved models: named, never a KeyError ------------------------------------------


def mmoe_payload(world: dict) -> dict:
    return read_checkpoint(world["model"])


def simulator_model() -> dict:
    """The smallest payload that passes the simulator schema (enough to reach the checks after it)."""
    return {"recrl_version": "0.1.0", "algo": "simulator", "config": {}, "dataset_fingerprint": "f",
            "exported": {"model_config": {}, "tasks": ["is_click"], "users": {"names": [], "cardinalities": []},
                         "items": {"names": [], "cardinalities": [], "tag_cardinality": 1}, "weights": {},
                         "prepared_dir": "elsewhere", "dataset_fingerprint": "f"}}  # fmt: skip


def _without_tasks(world):
    payload = mmoe_payload(world)
    del payload["exported"]["tasks"]
    return payload


def _tasks_as_text(world):
    payload = mmoe_payload(world)
    payload["exported"]["tasks"] = "click,pay"
    return payload


def _resized_weight(world):
    payload = mmoe_payload(world)
    name = next(iter(payload["exported"]["weights"]))
    payload["exported"]["weights"][name] = torch.zeros(3, 3)
    return payload


def _weight_not_a_tensor(world):
    payload = mmoe_payload(world)
    name = next(iter(payload["exported"]["weights"]))
    payload["exported"]["weights"][name] = [1.0, 2.0]
    return payload


def _write(obj):
    return lambda world, path: save_checkpoint(path, obj(world)) if callable(obj) else torch.save(obj, path)


def _zip(world) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/data.pkl", b"not a pickle")
    return buffer.getvalue()


def _bytes(make):
    return lambda world, path: path.write_bytes(make(world))


MALFORMED = {
    "a dict without algo": (_write({"foo": 1}), r"is not a usable recrl saved model: it lacks 'algo'"),
    "an export without tasks": (_write(_without_tasks), r"it lacks 'exported\.tasks'"),
    "tasks as a string": (
        _write(_tasks_as_text),
        r"'exported\.tasks' is a str where a list or tuple belongs",
    ),
    "a list": (_write([1, 2, 3]), r"it holds a list, not a dict"),
    "a bare tensor": (_write(torch.zeros(3)), r"it holds a Tensor, not a dict"),
    "an empty file": (_bytes(lambda w: b""), r"is empty \(0 bytes\)"),
    "random bytes": (
        _bytes(lambda w: bytes(range(256)) * 8),
        r"cannot read checkpoint .*not a recrl saved model or damaged \(Unsupported operand",
    ),
    "a zip that is no torch file": (
        _bytes(_zip),
        r"cannot read checkpoint .*not a recrl saved model or damaged",
    ),
    "a truncated model": (
        _bytes(lambda w: w["model"].read_bytes()[: w["model"].stat().st_size // 2]),
        r"cannot read checkpoint .*not a recrl saved model or damaged",
    ),
    "an unknown algorithm": (
        _write({"algo": "nosuch", "exported": {}}),
        r"an algorithm this recrl does not know",
    ),
    "a weight of another shape": (
        _write(_resized_weight),
        r"the saved mmoe model cannot be rebuilt \(.*size",
    ),
    "a weight that is not a tensor": (
        _write(_weight_not_a_tensor),
        r"'exported\.weights\..*' is a list, not a tensor",
    ),
    "a resume checkpoint": (
        _write({"algorithm": {}, "loop": {}, "generator": torch.zeros(1), "torch_rng": torch.zeros(1)}),
        r"resume checkpoint of an unfinished run, not a saved model",
    ),
    "an agent": (
        _write(
            {"algo": "hac", "exported": {"agent": "hac", "agent_config": {}, "env_config": {}, "state": {}}}
        ),
        r"hac acts in the simulator and does not score rows",
    ),
    "a fusion policy": (
        _write({"algo": "unifiedrl", "exported": {"algo": "unifiedrl", "config": {}, "state": None}}),
        r"unifiedrl acts in the simulator and does not score rows",
    ),
    "a simulator for RetailRocket rows": (
        _write(lambda w: simulator_model()),
        r"simulator scores prepared KuaiRand data .* holds prepared RetailRocket data",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_evaluate_malformed_model_files(cli, world, work, case):
    make, message = MALFORMED[case]
    make(world, work / "model.pt")
    fails_cleanly(cli, world, work, "evaluate", work / "model.pt", "--data", world["rr"], match=message)


def test_evaluate_simulator_on_other_kuairand_data(cli, world, work):
    save_checkpoint(work / "sim.pt", simulator_model())
    fails_cleanly(cli, world, work, "evaluate", work / "sim.pt", "--data", world["kr"],
                  match=r"the simulator was trained on other data than .*fingerprints differ")  # fmt: skip


def test_evaluate_without_data_looks_for_the_data_of_the_models_kind(cli, world, work):
    """A simulator scores KuaiRand: without --data it reads datasets/prepared/kuairand-pure, and the hint for a
    missing one says `recrl prepare kuairand`, not RetailRocket's command."""
    save_checkpoint(work / "sim.pt", simulator_model())
    line = fails_cleanly(cli, world, work, "evaluate", work / "sim.pt",
                         match=r"no prepared dataset at datasets/prepared/kuairand-pure .*run `recrl prepare kuairand`$")  # fmt: skip
    assert "retailrocket" not in line


def test_agent_checkpoint_as_simulator_is_named(cli, world, work):
    save_checkpoint(work / "hac.pt", {"algo": "hac", "exported": {"agent": "hac", "agent_config": {},
                                                                   "env_config": {}, "state": {}}})  # fmt: skip
    fails_cleanly(cli, world, work, "train", "hac", "--simulator", work / "hac.pt", "--data", world["kr"],
                  match=r"--simulator .*hac\.pt is a 'hac' model \(rl\), not a trained simulator")  # fmt: skip


def test_mtl_model_as_simulator_is_named(cli, world, work):
    fails_cleanly(cli, world, work, "train", "td3", "--simulator", world["run_dir"], "--data", world["kr"],
                  match=r"is a 'mmoe' model \(mtl base\), not a trained simulator")  # fmt: skip


@pytest.mark.parametrize("source", ["mmoe", "simulator"])
def test_model_without_critics_as_critics_is_named(cli, world, work, source):
    path = world["model"]
    if source == "simulator":
        path = work / "sim.pt"
        save_checkpoint(path, simulator_model())
    fails_cleanly(cli, world, work, "train", "rmtl", "--critics", path, "--data", world["rr"],
                  match=rf"model\.critics: .* holds no RMTL critics \(a '{source}' model")  # fmt: skip


def test_malformed_simulator_is_named(cli, world, work):
    save_checkpoint(work / "sim.pt", {"algo": "simulator", "exported": {"tasks": []}})
    fails_cleanly(cli, world, work, "train", "hac", "--simulator", work / "sim.pt", "--data", world["kr"],
                  match=r"sim\.pt is not a usable recrl saved model: it lacks 'exported\.model_config'")  # fmt: skip


# ---- resume checkpoints that are plain but do not fit --------------------------------------------------------


def test_resume_checkpoint_with_a_foreign_loop_state(cli, world, work):
    ckpt = {"algorithm": {}, "loop": {"step": 3}, "generator": torch.zeros(1), "torch_rng": torch.zeros(1)}
    runs = _interrupted_run(world, work, ckpt)
    fails_cleanly(cli, world, work, *_resume(world, runs), match=r"its loop state differs in \[.*'step'")


def test_resume_checkpoint_of_another_algorithm(cli, world, work):
    from recrl_cli.training.trainer import LoopState

    ckpt = {"algorithm": {"agent": {}}, "loop": dict(LoopState().__dict__), "generator": torch.zeros(1),
            "torch_rng": torch.zeros(1)}  # fmt: skip
    runs = _interrupted_run(world, work, ckpt)
    fails_cleanly(cli, world, work, *_resume(world, runs),
                  match=r"cannot resume from .*checkpoint\.pt: its state does not fit this run \(missing 'model'\)")  # fmt: skip


def test_resume_checkpoint_that_is_not_a_dict(cli, world, work):
    runs = _interrupted_run(world, work, {"x": 1})
    (next(runs.iterdir()) / "checkpoint.pt").write_bytes(b"\x00" * 64)
    fails_cleanly(cli, world, work, *_resume(world, runs),
                  match=r"cannot read checkpoint .*checkpoint\.pt: not a recrl resume checkpoint or damaged")  # fmt: skip


# ---- datasets of the wrong kind --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algo", "data", "need", "got"),
    [
        ("simulator", "rr", "KuaiRand", "RetailRocket"),
        ("hac", "rr", "KuaiRand", "RetailRocket"),
        ("hrlrec", "rr", "KuaiRand", "RetailRocket"),
        ("mtf-iql", "rr", "KuaiRand", "RetailRocket"),
    ],
)
def test_train_on_the_wrong_kind_of_dataset(cli, world, work, algo, data, need, got):
    fails_cleanly(cli, world, work, "train", algo, "--data", world[data],
                  match=rf"{algo} trains on prepared {need} data \(`recrl prepare {need.lower()}`\), but .* holds prepared "
                        rf"{got} data")  # fmt: skip
    assert not (work / "mlflow.db").exists()


def test_evaluate_on_the_wrong_kind_of_dataset(cli, world, work):
    fails_cleanly(cli, world, work, "evaluate", world["model"], "--data", world["kr"],
                  match=r"this mmoe model was trained on prepared RetailRocket data, but .* holds prepared KuaiRand data")  # fmt: skip


# ---- evaluate by run id -----------------------------------------------------------------------------------------


def test_evaluate_unknown_run_id_without_a_store_creates_none(cli, world, work):
    fails_cleanly(cli, world, work, "evaluate", "0123456789abcdef" * 2, "--data", world["rr"],
                  match=r"no MLflow run '0123.*' in sqlite:///.*mlflow\.db")  # fmt: skip
    assert not (work / "mlflow.db").exists()


def test_evaluate_unknown_run_id_leaves_the_store_unchanged(cli, world, work):
    fails_cleanly(cli, world, work, "evaluate", "f" * 32, "--data", world["rr"], "--tracking-uri", world["uri"],
                  match=r"no MLflow run 'f{32}'")  # fmt: skip


def test_evaluate_run_without_a_model(cli, world, work):
    fails_cleanly(cli, world, work, "evaluate", world["empty_run"], "--data", world["rr"],
                  "--tracking-uri", world["uri"], match=rf"model/model\.pt.*{world['empty_run']}")  # fmt: skip


def test_evaluate_by_run_id_still_works(cli, world, work):
    """The safe loader reads what recrl writes: the trained run scores again through its run id."""
    result = cli("evaluate", world["good_run"], "--data", world["rr"], "--tracking-uri", world["uri"])
    assert result.exit_code == 0, result.output
    assert "auc" in result.stdout


# ---- the writer: only plain data, so that the reader needs no allow-list -----------------------------------------


def test_save_refuses_objects_the_safe_loader_would_reject(tmp_path):
    import numpy as np

    from recrl_cli.config.schema import TrainConfig

    for bad in ({"x": np.zeros(2)}, {"cfg": TrainConfig()}, {"p": Path("a")}, {1.5: 1}):
        with pytest.raises(TypeError):
            save_checkpoint(tmp_path / "x.pt", bad)
    assert list(tmp_path.iterdir()) == []
    check_plain({"a": [1, 2.0, "s", None, True, (torch.zeros(1), torch.float32, torch.Size([2]))]})
    with pytest.raises(DataError, match="not found"):
        read_checkpoint(tmp_path / "x.pt")
