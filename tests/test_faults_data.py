"""Faults and bad input around data: `recrl synth`, `recrl prepare` (RetailRocket and KuaiRand) and
loading damaged prepared data through `recrl train` / `recrl evaluate`.

Every case ends the same way (tests/faults.py): exit code 1, exactly one `error:` line, no traceback,
no output and no temporary folder left, and every file that existed before byte-for-byte unchanged
(the whole workspace, the current directory included, is checksummed before and after). The
data-loss cases of issue 13 are here verbatim: `--raw raw_same --out raw_same`,
`--raw userdir/rr_raw --out userdir` and `--out .`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults import ANSI, entries, one_line_error, one_line_process_error, tree_digest

from recrl_cli.data.atomic import TMP_MARK
from recrl_cli.data.prepare.kuairand import raw_files
from recrl_cli.signals import deferred_signals

KR_FILES = raw_files("pure")
KR_FIRST_LOG = KR_FILES["standard"][0]
KR_SMALL = ("--set", "n_core=1", "--set", "min_count=1")


def leftovers(*folders: Path) -> list[str]:
    """Hidden temporary folders of an atomic output left in any of ``folders``."""
    return [name for folder in folders for name in entries(folder) if TMP_MARK in name]


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty workspace that is also the current directory (so `--out .` and stray stores show up)."""
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="module")
def kr_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(raw, prepared) tiny synthetic KuaiRand-Pure, made once for the module."""
    from recrl_cli.data.prepare.kuairand import KuaiRandPrepareParams, prepare_kuairand
    from recrl_cli.data.synth.kuairand import write_kuairand

    root = tmp_path_factory.mktemp("kr-faults")
    write_kuairand(root / "raw", num_users=40, num_items=30, num_impressions=2_000, seed=2)
    prepare_kuairand(root / "raw", root / "prepared", KuaiRandPrepareParams(n_core=1, min_count=1))
    return root / "raw", root / "prepared"


def fails_cleanly(cli, ws: Path, *args: object, match: str, code: int = 1) -> str:
    """Run `recrl ARGS` in ``ws``: exit status ``code``, one error line matching ``match``, the workspace untouched."""
    before = tree_digest(ws)
    names = sorted(str(p.relative_to(ws)) for p in ws.rglob("*"))
    line = one_line_error(cli(*args), code)
    assert match in line, line
    assert tree_digest(ws) == before
    assert sorted(str(p.relative_to(ws)) for p in ws.rglob("*")) == names  # no new (empty) folder either
    return line


# ---- data loss: what --out may replace ------------------------------------------------------------


def test_out_same_as_raw_is_refused_and_the_raw_files_stay(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.raw, ws / "raw_same")
    line = fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "raw_same", "--out", "raw_same",
                         match="is the input folder raw_same")  # fmt: skip
    assert "not even with --force" in line


def test_out_same_as_raw_is_refused_even_with_force(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.raw, ws / "raw_same")
    fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "raw_same", "--out", "raw_same", "--force",
                  match="not even with --force")  # fmt: skip


def test_out_containing_the_raw_folder_is_refused(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.raw, ws / "userdir" / "rr_raw")
    (ws / "userdir" / "notes.txt").write_text("my notes")
    fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "userdir/rr_raw", "--out", "userdir",
                  match="contains the input folder userdir/rr_raw")  # fmt: skip


def test_out_containing_the_raw_folder_is_refused_even_with_force(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.raw, ws / "userdir" / "rr_raw")
    fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "userdir/rr_raw", "--out", "userdir", "--force",
                  match="contains the input folder")  # fmt: skip


def test_out_dot_is_refused_before_any_work(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.raw, ws / "raw")
    fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "raw", "--out", ".", "--force",
                  match="--out . is the current directory")  # fmt: skip


def test_out_above_the_current_directory_is_refused(cli, cli_dataset, ws, monkeypatch):
    shutil.copytree(cli_dataset.raw, ws / "raw")
    (ws / "inner").mkdir()
    monkeypatch.chdir(ws / "inner")
    fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "../raw", "--out", "..", "--force",
                  match="a folder above the current directory")  # fmt: skip


def test_out_home_directory_is_refused(cli, cli_dataset, ws, monkeypatch):
    home = ws / "home"
    shutil.copytree(cli_dataset.raw, ws / "raw")
    home.mkdir()
    (home / ".bashrc").write_text("export A=1\n")
    monkeypatch.setenv("HOME", str(home))
    fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "raw", "--out", home, "--force",
                  match="is the home directory")  # fmt: skip


def test_out_folder_of_other_files_needs_force(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.raw, ws / "raw")
    (ws / "data").mkdir()
    (ws / "data" / "thesis.tex").write_text("\\chapter{}")
    line = fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "raw", "--out", "data",
                         match="holds no prepared retailrocket data (thesis.tex)")  # fmt: skip
    assert "--force" in line


def test_out_previous_output_with_a_foreign_file_needs_force(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.raw, ws / "raw")
    shutil.copytree(cli_dataset.prepared, ws / "prepared")
    (ws / "prepared" / "my_analysis.ipynb").write_text("{}")
    fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "raw", "--out", "prepared",
                  match="files recrl did not write (my_analysis.ipynb)")  # fmt: skip


def test_out_prepared_retailrocket_is_not_replaced_by_kuairand(cli, cli_dataset, kr_data, ws):
    shutil.copytree(kr_data[0], ws / "kr_raw")
    shutil.copytree(cli_dataset.prepared, ws / "prepared")
    fails_cleanly(cli, ws, "prepare", "kuairand", "--raw", "kr_raw", "--out", "prepared", *KR_SMALL,
                  match="holds no prepared kuairand data")  # fmt: skip


def test_out_is_a_file(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.raw, ws / "raw")
    (ws / "out").write_text("a file")
    fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "raw", "--out", "out", "--force",
                  match="exists and is not a directory")  # fmt: skip


def test_kuairand_out_same_as_raw_is_refused(cli, kr_data, ws):
    shutil.copytree(kr_data[0], ws / "kr")
    fails_cleanly(cli, ws, "prepare", "kuairand", "--raw", "kr", "--out", "kr", "--force", *KR_SMALL,
                  match="is the input folder kr")  # fmt: skip


def test_synth_never_replaces_a_users_folder(cli, ws):
    (ws / "userdir").mkdir()
    (ws / "userdir" / "photo.jpg").write_bytes(b"\xff\xd8")
    fails_cleanly(cli, ws, "synth", "retailrocket", "--events", 200, "--out", "userdir",
                  match="holds no synthetic retailrocket raw files (photo.jpg)")  # fmt: skip


def test_synth_out_dot_is_refused(cli, ws):
    (ws / "keep.txt").write_text("keep")
    fails_cleanly(cli, ws, "synth", "kuairand", "--users", 10, "--items", 10, "--impressions", 100,
                  "--out", ".", "--force", match="is the current directory")  # fmt: skip


def test_synth_kuairand_does_not_replace_prepared_data(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.prepared, ws / "prepared")
    fails_cleanly(cli, ws, "synth", "kuairand", "--users", 10, "--items", 10, "--impressions", 100,
                  "--out", "prepared", match="holds no synthetic kuairand raw files")  # fmt: skip


# ---- impossible values in the raw KuaiRand logs ----------------------------------------------------


@pytest.mark.parametrize("column", ["time_ms", "duration_ms", "play_time_ms", "video_id"])
def test_kuairand_negative_values_name_file_and_column(cli, kr_data, ws, column):
    raw = shutil.copytree(kr_data[0], ws / "kr")
    path = raw / KR_FIRST_LOG
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[7].split(",")
    # Negate the value, or -5 where it is blank or 0 (a "-0" is not negative: a skipped play has play_time_ms 0)
    value = row[header.index(column)].lstrip("-")
    row[header.index(column)] = "-" + value if value.strip("0") else "-5"
    lines[7] = ",".join(row)
    path.write_text("\n".join(lines) + "\n")
    line = fails_cleanly(cli, ws, "prepare", "kuairand", "--raw", "kr", "--out", "out", *KR_SMALL,
                         match=f"{KR_FIRST_LOG} has 1 rows with a negative {column} (first at data row 7)")  # fmt: skip
    assert not (ws / "out").exists() and leftovers(ws) == []
    assert line


@pytest.mark.parametrize("column", ["timestamp", "itemid"])
def test_retailrocket_negative_values_name_file_and_column(cli, cli_dataset, ws, column):
    raw = shutil.copytree(cli_dataset.raw, ws / "raw")
    lines = (raw / "events.csv").read_text().splitlines()
    row = lines[9].split(",")
    row[lines[0].split(",").index(column)] = "-3"
    lines[9] = ",".join(row)
    (raw / "events.csv").write_text("\n".join(lines) + "\n")
    fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "raw", "--out", "out",
                  match=f"events.csv has 1 rows with a negative {column} (first at data row 9)")  # fmt: skip


# ---- damaged prepared data: refused on load, before any run or store exists ----------------------


def zero_4k(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        fh.write(bytes(4096))


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def drop_feature(directory: Path, keep_checksum: bool = True) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["features"] = [f for f in manifest["features"] if f["name"] != "prop_776"]
    if not keep_checksum:  # a manifest as an older recrl wrote it: the column check still sees it
        del manifest["checksum"]
    path.write_text(json.dumps(manifest, indent=2))


def edit_manifest(directory: Path, change) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2))


DAMAGE = {
    "4 KiB zeroed in train.parquet": (lambda d: zero_4k(d / "train.parquet"), "does not match its manifest hash"),
    "feature removed from manifest.json": (drop_feature, "manifest.json was changed after `recrl prepare`"),
    "feature removed, no checksum": (
        lambda d: drop_feature(d, keep_checksum=False), "has unlisted prop_776"
    ),
    "cardinality edited in manifest.json": (
        lambda d: edit_manifest(d, lambda m: m["features"][0].update(cardinality=3)), "checksum differs"
    ),
    "train.parquet truncated": (
        lambda d: os.truncate(d / "train.parquet", (d / "train.parquet").stat().st_size - 1000), "(truncated or changed)"
    ),
    "bytes appended to test.parquet": (lambda d: append(d / "test.parquet", b"junk"), "test.parquet is"),
    "val.parquet missing": (lambda d: (d / "val.parquet").unlink(), "val.parquet is missing"),
    "train.parquet replaced by val.parquet": (
        lambda d: shutil.copyfile(d / "val.parquet", d / "train.parquet"), "train.parquet is"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DAMAGE))
def test_train_refuses_damaged_prepared_data(cli, cli_dataset, ws, case):
    data = shutil.copytree(cli_dataset.prepared, ws / "prepared")
    damage, message = DAMAGE[case]
    damage(data)
    line = fails_cleanly(cli, ws, "train", "mmoe", "--data", "prepared", "--epochs", 1, match=message)
    assert "run `recrl prepare retailrocket` again" in line
    assert not (ws / "mlflow.db").exists() and not (ws / "runs").exists()


def test_evaluate_refuses_damaged_prepared_data_before_reading_the_model(cli, cli_dataset, ws):
    data = shutil.copytree(cli_dataset.prepared, ws / "prepared")
    zero_4k(data / "val.parquet")
    (ws / "model.pt").write_bytes(b"not read: the data fail first")
    fails_cleanly(cli, ws, "evaluate", "model.pt", "--data", "prepared", match="val.parquet does not match")


def test_simulator_training_refuses_damaged_kuairand_data(cli, kr_data, ws):
    data = shutil.copytree(kr_data[1], ws / "kr_prepared")
    zero_4k(data / "rows.parquet")
    line = fails_cleanly(cli, ws, "train", "simulator", "--data", "kr_prepared", "--epochs", 1,
                         match="rows.parquet does not match its manifest hash")  # fmt: skip
    assert "recrl prepare kuairand" in line


def test_text_items_refuses_damaged_prepared_data_and_writes_nothing(cli, cli_dataset, ws):
    data = shutil.copytree(cli_dataset.prepared, ws / "prepared")
    shutil.copytree(cli_dataset.raw, ws / "raw")
    zero_4k(data / "test.parquet")
    fails_cleanly(cli, ws, "text", "items", "prepared", "--properties", "raw",
                  match="test.parquet does not match its manifest hash")  # fmt: skip


def test_kuairand_feature_removed_from_manifest_is_caught(kr_data, tmp_path):
    from recrl_cli.data.manifest import open_prepared
    from recrl_cli.errors import DataError

    data = shutil.copytree(kr_data[1], tmp_path / "kr")
    edit_manifest(data, lambda m: (m.pop("checksum"), m["features"].pop()))  # tags: an unlisted column
    with pytest.raises(DataError, match=r"items\.parquet does not match the features .*has unlisted tags"):
        open_prepared(data, "kuairand")


# ---- interrupts: Ctrl-C in process, SIGTERM in a real process -------------------------------------


def test_ctrl_c_while_writing_leaves_nothing_and_keeps_the_old_output(cli, cli_dataset, ws, monkeypatch):
    from recrl_cli.data.prepare import retailrocket as rr

    shutil.copytree(cli_dataset.raw, ws / "raw")
    shutil.copytree(cli_dataset.prepared, ws / "prepared")
    real = rr._split_summary

    def ctrl_c_after_the_first_file(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # a real SIGINT, handled as Python does by default
        return real(*args, **kwargs)

    monkeypatch.setattr(rr, "_split_summary", ctrl_c_after_the_first_file)
    fails_cleanly(cli, ws, "prepare", "retailrocket", "--raw", "raw", "--out", "prepared",
                  match="interrupted (Ctrl-C)", code=130)  # fmt: skip
    assert leftovers(ws) == []


def test_sigterm_mid_prepare_removes_the_temporary_folder_and_keeps_the_old_output(kr_data, tmp_path):
    """A real `recrl prepare kuairand` process gets SIGTERM as soon as its temporary folder exists."""
    from recrl_cli.data.synth.kuairand import write_kuairand

    write_kuairand(tmp_path / "raw", num_users=200, num_items=150, num_impressions=30_000, seed=4)
    out = shutil.copytree(kr_data[1], tmp_path / "prepared")  # a previous output: must survive intact
    before = tree_digest(tmp_path)
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "250"}
    args = ["prepare", "kuairand", "--raw", "raw", "--out", "prepared", "--set", "n_core=1"]
    proc = subprocess.Popen([sys.executable, "-m", "recrl_cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen, deadline = False, time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if leftovers(tmp_path):
            seen = True
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.002)
    stdout, stderr = proc.communicate(timeout=240)
    assert seen, f"the temporary folder never appeared (rc={proc.returncode}): {ANSI.sub('', stderr)}"
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert "stopped by SIGTERM" in one_line_process_error(done, 143)
    assert leftovers(tmp_path) == [] and sorted(entries(tmp_path)) == ["prepared", "raw"]
    after = tree_digest(tmp_path)
    assert {k: v for k, v in after.items() if k.startswith("raw")} == {
        k: v for k, v in before.items() if k.startswith("raw")
    }
    if after != before:
        # On a loaded machine this loop may first see the temporary folder during the final swap, which a
        # signal never cuts in two: the stop lands just after it. The folder is then the new output, whole.
        from recrl_cli.data.manifest import open_prepared

        open_prepared(out, "kuairand")


def test_a_sigterm_swallowed_by_native_code_still_stops_the_swap(tmp_path):
    """polars can catch what a signal handler raises inside its callbacks: the output must not appear."""
    from recrl_cli.data.atomic import atomic_output_dir
    from recrl_cli.signals import Terminated

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("previous result")
    with pytest.raises(Terminated), atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "new.txt").write_text("half")
        with contextlib.suppress(BaseException):  # what a native callback does with the exception
            signal.raise_signal(signal.SIGTERM)  # handled: atomic_output_dir installed the handler
    assert entries(tmp_path / "out") == ["old.txt"] and leftovers(tmp_path) == []


def test_deferred_signals_deliver_after_the_block():
    with pytest.raises(KeyboardInterrupt), deferred_signals():
        signal.raise_signal(signal.SIGINT)
        reached = True  # the block is not cut short
    assert reached


# ---- what must keep working ---------------------------------------------------------------------


def test_prepare_replaces_its_own_previous_output(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.raw, ws / "raw")
    out = shutil.copytree(cli_dataset.prepared, ws / "prepared")
    (out / "item_text.parquet").write_bytes(b"recrl text items output")  # also recrl's: may go
    result = cli("prepare", "retailrocket", "--raw", "raw", "--out", "prepared", "--min-count", 2)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["min_count"] == 2 and "checksum" in manifest
    assert entries(out) == ["manifest.json", "test.parquet", "train.parquet", "val.parquet"]
    assert leftovers(ws) == []


def test_force_replaces_a_folder_recrl_did_not_write(cli, cli_dataset, ws):
    shutil.copytree(cli_dataset.raw, ws / "raw")
    (ws / "scratch").mkdir()
    (ws / "scratch" / "old.txt").write_text("disposable")
    result = cli("prepare", "retailrocket", "--raw", "raw", "--out", "scratch", "--force")
    assert result.exit_code == 0, result.output
    assert "old.txt" not in entries(ws / "scratch") and "manifest.json" in entries(ws / "scratch")


def test_synth_replaces_its_own_previous_output(cli, ws):
    for seed in (1, 2):
        result = cli("synth", "retailrocket", "--events", 300, "--seed", seed, "--out", "raw")
        assert result.exit_code == 0, result.output
    assert json.loads((ws / "raw" / "ground_truth.json").read_text())["seed"] == 2
    assert leftovers(ws) == []
