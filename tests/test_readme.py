"""The README as a test that runs (issue 18): every command of the README's code blocks and of its command table
runs as written, in a tiny world made in a temporary directory the way a user makes theirs.

The world is the README's own walk-through, run with tiny sizes in a temporary working directory, so that the
README's default paths (``datasets/raw/...``, ``datasets/prepared/...``, ``runs/``, ``./mlflow.db``) are real:
synthetic RetailRocket and KuaiRand, prepared; an MMoE, two simulators and an MMoE on KuaiRand trained for a few
steps; the text extra's item texts and random BERT. Every other command then runs with the README's placeholders
(``runs/simulator-<key>``, ``<run id ...>``) replaced by that world's runs:

* data, text, evaluation and inspection commands (``synth``, ``prepare``, ``text``, ``evaluate``, ``check``,
  ``algos``) run for real, sizes cut by appended options (``--events 4000``, ``--steps 4``: the last value wins);
* ``train`` and ``ablate`` run with ``--dry-run`` (the resolved config, and for a study its runs), except the ones
  that build the world; the ``slow`` test (``make test-slow``) trains each of them for real with tiny sizes;
* what cannot run in a test (a server, installs, torchrun, benchmarks) is listed in :data:`NOT_RUNNABLE` with the
  reason.

A README command that is neither run nor listed fails :func:`test_every_readme_command_is_run_or_listed`, so a new
command in the README must be covered here. Each command must exit 0 without a traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import invoke_cli

README = Path(__file__).resolve().parent.parent / "README.md"
#: The programs whose lines in a code block are commands (other lines: output, layout, comments).
PROGRAMS = ("recrl", "make", "torchrun", "pip", "python")

#: README commands that a test cannot run, and why (each is still in the README, so each must be listed).
NOT_RUNNABLE = {
    "recrl ui": "starts the MLflow UI server and serves until stopped (tests/test_tracking.py starts and stops one)",
    "make install && make demo": "installs packages into the environment (the demo's steps are the walk-through's)",
    "make test": "the fast suite, this test included",
    "make lint": "ruff over the code, the project's lint step, not a recrl command",
    "pip install 'recrl[ray]'": "installs a package",
    "torchrun --nproc-per-node 2 -m recrl_cli train mmoe --epochs 5": "two torchrun processes "
    "(tests/test_distributed.py runs them in the slow suite; `train --nproc 2 --dry-run` runs here)",
    "torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint head:29500 -m recrl_cli train mmoe "
    "--device cuda": "two machines with 8 GPUs each",
    "python benchmarks/bench_fusion_headroom.py --simulator runs/simulator-<key> --data PREPARED --ranker self "
    "--ranker taste-free --ranker runs/simulator-<ranker key> --seeds 3 --steps 50 --expected-only": "a benchmark "
    "(minutes of CPU; `make bench` runs the benchmarks)",
    "python benchmarks/bench_sim_world.py --raw datasets/raw/kuairand --prepared datasets/prepared/kuairand-pure": "a "
    "benchmark (trains a full-size simulator; `make bench`)",
    "python benchmarks/bench_synth_realism.py --raw datasets/raw/kuairand --real ../shared/data/kuairand": "a "
    "benchmark that needs the real KuaiRand files beside the checkout",
    "python benchmarks/bench_sim_mf_diagnostic.py --raw datasets/raw/kuairand --prepared "
    "datasets/prepared/kuairand-pure": "a benchmark (minutes of CPU; `make bench`)",
    "python benchmarks/bench_hrlrec.py --seeds 5": "a benchmark (5 seeds of every variant; `make bench`)",
}

#: ``train`` / ``ablate`` commands the slow test runs only as a dry run, and why.
DRY_RUN_ONLY = {
    "recrl train unifiedrl --simulator runs/simulator-<a> --preset paper": "a GPU-sized run (24 critics, 300k steps); "
    "tiny sizes would undo the preset the command is about",
    "recrl train rmtl --base mmoe --nproc 2": "two torchrun processes (tests/test_distributed.py, slow suite)",
    "recrl ablate mmoe --expert-num 4,8 --backend ray": "starts a Ray cluster (tests/test_ray_backend.py)",
    "recrl ablate mmoe --expert-num 2,4,8 --seeds 3 --backend ray": "starts a Ray cluster (tests/test_ray_backend.py)",
    "recrl ablate rmtl --lam 0.3,0.7 --backend ray --address auto --device cuda": "a running Ray cluster with GPUs",
    "recrl ablate mmoe --expert-num 2,4,8 --seeds 3 --jobs 3": "three worker processes (tests/test_cli.py runs --jobs)",
    "recrl train hac --simulator runs/<sim>/ --data prep-kuairand/ --item-encoder text --text-model <dir>": "its "
    "simulator would have to be trained on prep-kuairand/ (tests/test_text.py trains an agent with text items)",
}

# Tiny sizes appended to a command that runs for real (the last value of an option wins).
SYNTH_TINY = {
    "retailrocket": ["--events", "4000"],
    "kuairand": ["--users", "60", "--items", "50", "--impressions", "2000"],
}
MTL_TINY = ["--embed-dim", "8", "--bottom-dims", "16", "--tower-dims", "8", "--expert-num", "2",
            "--batch-size", "256", "--max-steps", "3"]  # fmt: skip
RMTL_TINY = [*MTL_TINY, "--critic-embed-dim", "8", "--critic-bottom-dims", "16", "--critic-tower-dims", "8",
             "--pretrain-epochs", "1", "--critic-epochs", "1", "--polish-epochs", "1"]  # fmt: skip
SIM_TINY = ["--user-latent", "4", "--item-latent", "4", "--enc-dim", "8", "--n-layers", "1", "--n-heads", "2",
            "--ff-dim", "8", "--state-hidden", "8", "--history-length", "8", "--taste-dim", "4", "--epochs", "1",
            "--max-steps", "2", "--batch-size", "64", "--check-steps", "0"]  # fmt: skip
AGENT_TINY = ["--batch-users", "4", "--slate-size", "2", "--warmup-steps", "3", "--iterations", "4",
              "--eval-steps", "3", "--latent", "4", "--enc-dim", "4", "--n-heads", "2", "--ff-dim", "8",
              "--n-layers", "1", "--action-hidden", "8", "--critic-hidden", "8", "--inverse-hidden", "8",
              "--batch-size", "4", "--buffer-size", "64"]  # fmt: skip
FUSION_TINY = ["--batch-users", "8", "--slate-size", "3", "--retrieved", "10", "--random-candidates", "5",
               "--cem-population", "4", "--cem-iterations", "2", "--cem-steps", "3", "--collect-steps", "10",
               "--iterations", "10", "--batch-size", "16", "--hidden", "16", "--eval-waves", "1",
               "--eval-users", "8", "--guard-users", "8", "--test-steps", "5", "--critics", "2"]  # fmt: skip
LIST_TINY = ["--batch-users", "4", "--warmup-steps", "2", "--iterations", "3", "--eval-days", "2",
             "--day-steps", "2", "--latent", "4", "--enc-dim", "8", "--n-heads", "2", "--ff-dim", "8",
             "--action-dim", "8", "--hidden", "8", "--batch-size", "8", "--buffer-size", "64",
             "--list-length", "4"]  # fmt: skip
CPU = ["--device", "cpu", "--threads", "1"]


def train_tiny(algo: str) -> list[str]:
    """The options that make a ``recrl train ALGO`` run take seconds (appended, so they win)."""
    if algo == "simulator":
        return SIM_TINY
    if algo == "rmtl":
        return RMTL_TINY
    if algo in ("hac", "ddpg", "td3", "a2c"):
        return AGENT_TINY
    if algo == "unifiedrl" or algo.startswith("mtf-"):
        return FUSION_TINY
    if algo == "hrlrec":
        return LIST_TINY
    return [*MTL_TINY, "--epochs", "1"]


# ---- the README's commands -------------------------------------------------------------------------------------


def readme_commands() -> list[str]:
    """Every command line of a code block (``bash`` or plain; continuations joined, comments cut) that starts with
    one of :data:`PROGRAMS`, and every ``recrl ...`` of the command table's first column, in README order."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```(?:bash)?\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.split(r"\s#\s", line)[0].strip()
            line = re.sub(r"\s+", " ", line)
            if line.split(" ", 1)[0] in PROGRAMS:
                commands.append(line)
    for row in re.findall(r"^\| (`recrl .*?) \|", text, re.M):  # the command table's first column
        commands += re.findall(r"`(recrl [^`]+)`", row)
    return list(dict.fromkeys(commands))


def test_the_readme_has_commands_for_every_command_group():
    groups = {c.split()[1] for c in readme_commands() if c.startswith("recrl ")}
    assert {"synth", "prepare", "train", "evaluate", "ablate", "algos", "ui", "text", "check"} <= groups


def test_every_readme_command_is_run_or_listed():
    """A README command is run by :func:`test_a_readme_command_runs_as_written` (every ``recrl`` command but the
    listed ones) or listed in :data:`NOT_RUNNABLE`; a listed command that left the README is dropped from the list."""
    commands = readme_commands()
    unlisted = [c for c in commands if not c.startswith("recrl ") and c not in NOT_RUNNABLE]
    assert not unlisted, f"README commands neither run nor listed in NOT_RUNNABLE: {unlisted}"
    assert not set(NOT_RUNNABLE) - set(commands), "NOT_RUNNABLE lists commands the README no longer has"
    assert not set(DRY_RUN_ONLY) - set(commands), "DRY_RUN_ONLY lists commands the README no longer has"
    assert not [c for c in commands if c.startswith("recrl ") and c.split()[1] not in HOW], (
        "a new command group"
    )


# ---- the world -------------------------------------------------------------------------------------------------


@dataclass
class World:
    """A working directory as a user's after the walk-through, and what each world command printed."""

    root: Path
    ran: dict[str, object] = field(default_factory=dict)  # README command -> its click Result
    runs: dict[str, str] = field(default_factory=dict)  # placeholder -> path or id

    def run(self, command: str, *extra: str, record: bool = True):
        """``recrl ...`` as written plus ``extra``, in the world's directory; the result, recorded under the
        README command."""
        args = fill(command, self.runs)
        result = invoke_cli(*shlex.split(args)[1:], *extra)
        if record:
            self.ran[command] = result
        assert_ok(command, result)
        return result


def assert_ok(command: str, result) -> None:
    """Exit code 0 and no traceback: what a README command must give."""
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in output, f"{command}\n{output}"
    assert result.exit_code == 0, f"{command}: exit {result.exit_code}\n{output}\n{result.exception!r}"


def new_run(runs_before: set[Path]) -> str:
    """The run directory (``runs/<algo>-<key>``) a command just made."""
    made = {p for p in Path("runs").iterdir() if (p / "model.pt").is_file()} - runs_before
    assert len(made) == 1, made
    return made.pop().as_posix()


def existing_runs() -> set[Path]:
    return {p for p in Path("runs").iterdir()} if Path("runs").is_dir() else set()


def fill(command: str, runs: dict[str, str]) -> str:
    """The README's placeholders replaced by the world's paths and ids."""
    ranker_mmoe = "--ranker runs/mmoe-<key>" in command
    for placeholder, value in (
        ("<MLflow run id or name | runs/rmtl-<key> | model.pt>", runs.get("rmtl", "rmtl-mmoe-seed2022")),
        ("<run id or runs/<key>>", runs.get("mmoe_id", "")),
        ("runs/simulator-<ranker key>", runs.get("ranker", "")),
        ("runs/simulator-<key>", runs.get("simulator", "")),
        ("runs/simulator-<a>", runs.get("simulator", "")),
        ("runs/simulator-<b>", runs.get("ranker", "")),
        ("runs/mmoe-<key>", runs.get("mmoe_kuairand" if ranker_mmoe else "mmoe", "")),
        ("runs/<sim>/", runs.get("simulator", "") + "/"),
        ("<dir>", "bert/"),
        ("[NAME]", "mmoe"),
    ):
        command = command.replace(placeholder, value)
    if command.startswith("recrl text items DATA"):
        command = command.replace("DATA", "prep/").replace("FILE", "raw/item_text.csv")
    if command.startswith("recrl text init-model DIR"):
        command = command.replace("DIR", "bert-table/").replace("DATA", "prep/")
    assert not re.search(r"<[^>]*>", command), f"a placeholder left in {command!r}"
    return command


#: The world, in order: README commands that make what the others read (tiny sizes appended).
WORLD = [
    ("recrl synth retailrocket --events 30000", SYNTH_TINY["retailrocket"]),
    ("recrl prepare retailrocket", []),
    ("recrl train mmoe --epochs 5", [*train_tiny("mmoe"), *CPU]),
    ("recrl synth kuairand --version pure --users 1000 --impressions 300000 --out datasets/raw/kuairand",
     SYNTH_TINY["kuairand"]),
    ("recrl prepare kuairand", []),
    ("recrl train simulator --seed 0", [*SIM_TINY, *CPU]),
    ("recrl train simulator --no-user-taste --check-steps 0", [*SIM_TINY, *CPU]),
    ("recrl train mmoe --data datasets/prepared/kuairand-pure", [*train_tiny("mmoe"), *CPU]),
    ("recrl synth retailrocket --events 60000 --item-text --out raw/", SYNTH_TINY["retailrocket"]),
    ("recrl prepare retailrocket --raw raw/ --out prep/ --min-count 1", []),
    ("recrl text items prep/ --captions raw/item_text.csv", []),
    ("recrl text init-model bert/ --data prep/ --hidden 64 --layers 2", []),
]  # fmt: skip
#: What each world command's new run directory stands for.
WORLD_RUNS = {
    "recrl train mmoe --epochs 5": "mmoe",
    "recrl train simulator --seed 0": "simulator",
    "recrl train simulator --no-user-taste --check-steps 0": "ranker",
    "recrl train mmoe --data datasets/prepared/kuairand-pure": "mmoe_kuairand",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, new_mlflow_db) -> Iterator[World]:
    """The walk-through in a temporary working directory (a migrated ``./mlflow.db`` copied in: the default store)."""
    import json

    root = tmp_path_factory.mktemp("readme")
    before = Path.cwd()
    new_mlflow_db(root)
    shutil.copytree(
        README.parent / "experiments", root / "experiments"
    )  # `--config experiments/...` as in a checkout
    os.chdir(root)
    saved = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI",)}
    try:
        w = World(root)
        for command, extra in WORLD:
            runs = existing_runs()
            w.run(command, *extra)
            if command in WORLD_RUNS:
                w.runs[WORLD_RUNS[command]] = new_run(runs)
        run_json = json.loads((Path(w.runs["mmoe"]) / "run.json").read_text())
        w.runs["mmoe_id"] = run_json["mlflow_run_id"]
        # KuaiRand's public supplementary files, for the text command that reads them: captions from synth, and
        # a categories file in the public format.
        w.run("recrl synth kuairand --out raw-kuairand --item-text", *SYNTH_TINY["kuairand"], record=False)
        w.run("recrl prepare kuairand --raw raw-kuairand --out prep-kuairand", record=False)
        shutil.copy("raw-kuairand/kuairand_video_captions.csv", "kuairand_video_captions.csv")
        Path("kuairand_video_categories.csv").write_text(
            "final_video_id,first_level_category_name,second_level_category_name\n0,pets,dogs\n1,food,\n"
        )
        yield w
    finally:
        os.chdir(before)
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value


# ---- every command ---------------------------------------------------------------------------------------------


def _real(command: str) -> list[str]:
    """The tiny sizes appended to a data / inspection command that runs for real."""
    group = command.split()[1]
    if group == "synth":
        return SYNTH_TINY[command.split()[2]]
    if group == "check":
        return ["--steps", "4", "--device", "cpu"]
    return []


#: How a ``recrl`` command group runs in the fast suite: for real (tiny) or as a dry run.
HOW = {"synth": "real", "prepare": "real", "text": "real", "evaluate": "real", "check": "real", "algos": "real",
       "train": "dry-run", "ablate": "dry-run", "ui": "listed"}  # fmt: skip


def _runnable() -> list[str]:
    return [c for c in readme_commands() if c.startswith("recrl ") and c not in NOT_RUNNABLE]


@pytest.mark.parametrize("command", _runnable())
def test_a_readme_command_runs_as_written(world, command, tmp_path):
    """Exit 0, no traceback: a world command by its recorded result, a data or inspection command for real (tiny),
    a training or study as a dry run (its resolved config, and a study's runs)."""
    if command in world.ran:
        assert_ok(command, world.ran[command])
        return
    how = HOW[command.split()[1]]
    if "27k" in command:  # its own directory: the 27K raw files would replace the world's Pure ones
        (Path("k27")).mkdir(exist_ok=True)
        os.chdir("k27")
        try:
            if "prepare" in command and not Path("datasets/raw/kuairand").is_dir():
                world.run(next(c for c in readme_commands() if c.startswith("recrl synth kuairand --version 27k")),
                          *SYNTH_TINY["kuairand"], record=False)  # fmt: skip
            world.run(command, *_real(command))
        finally:
            os.chdir(world.root)
        return
    if how == "real":
        world.run(command, *_real(command))
    else:
        before = existing_runs()
        result = world.run(command, "--dry-run")
        assert "model." in result.stdout or "train." in result.stdout, result.output  # the resolved config
        assert existing_runs() == before  # nothing trained
        if command.startswith("recrl ablate"):  # and a study's runs, one line each
            assert re.search(r"^run 1 of \d+: ", result.stdout, re.M), result.output
        if command == "recrl ablate mmoe --expert-num 4,8 --seeds 3 --dry-run":
            assert "run 6 of 6: expert_num=8 seed=" in result.stdout, result.output


def _tiny_for(command: str) -> list[str]:
    """Tiny sizes for a real ``train`` / ``ablate`` run; a study keeps its own axes (an option the command sets is
    not overridden) and runs one seed."""
    words = command.split()
    algo = words[2]
    tiny = [*train_tiny(algo), *CPU]
    if words[1] == "train":
        return [*tiny, "--force"]  # the README trains some configurations twice (`recrl train mmoe`)
    pairs = [tiny[i : i + 2] for i in range(0, len(tiny), 2)]
    return [a for pair in pairs if pair[0] not in words for a in pair] + ["--seeds", "1"]


def _trained() -> list[str]:
    return [c for c in _runnable() if HOW[c.split()[1]] == "dry-run" and c not in DRY_RUN_ONLY]


@pytest.mark.slow
@pytest.mark.parametrize("command", _trained())
def test_a_readme_training_trains_for_real(world, command):
    """``make test-slow``: each ``train`` / ``ablate`` command of the README trains for real with tiny sizes (the
    fast suite runs it as a dry run). ``--critics`` names the MLflow run of an RMTL training by its run name."""
    if "--critics <" in command and "rmtl" not in world.runs:
        world.run("recrl train rmtl --base mmoe", *_tiny_for("recrl train rmtl --base mmoe"),
                  "--name", "readme-critics", record=False)  # fmt: skip
        world.runs["rmtl"] = "readme-critics"
    world.run(command, *_tiny_for(command), record=False)
