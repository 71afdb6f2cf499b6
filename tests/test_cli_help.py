"""`--help` and one-line errors: the algorithm's own options, flags shown as flags, and no torch before work starts
(issue 18: every call took 10-19 s because torch, scipy and mlflow were imported first)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from recrl_cli.algorithms import catalog, options
from recrl_cli.algorithms.registry import ALGORITHMS

HEAVY = ("torch", "scipy", "mlflow", "pandas", "pyarrow")
PROBE = """
import json, sys
from recrl_cli.cli.app import main
sys.argv = ["recrl", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    code = exc.code
print("\\nMODULES", json.dumps([m for m in {heavy} if m in sys.modules]), code)
"""


def _probe(*args: str) -> tuple[list[str], int, str]:
    """Run `recrl ARGS` in a fresh interpreter; (heavy modules it imported, exit code, output)."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps(list(args))],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "100", "NO_COLOR": "1"},
    )  # fmt: skip
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("MODULES"), proc.stdout + proc.stderr
    modules, code = last.removeprefix("MODULES ").rsplit(" ", 1)
    return json.loads(modules), int(code) if code.isdigit() else 0, proc.stdout + proc.stderr


def test_help_and_one_line_errors_import_no_heavy_module():
    options.tables()  # the option tables are cached for this code (what the first `--help` does)
    calls = {
        ("--help",): 0, ("train", "--help"): 0, ("train", "rmtl", "--help"): 0, ("ablate", "hac", "--help"): 0,
        ("algos",): 0, ("algos", "unifiedrl"): 0, ("train", "nosuch"): 1, ("train", "mmoe", "--nproc", "x"): 1,
        ("evaluate", "--split"): 1, ("train", "unifiedrl", "--lr", "0.5"): 1, ("train", "mmoe", "--nosuch", "1"): 1,
        ("ablate", "hac", "--patience", "1,2"): 1,
    }  # fmt: skip
    for args, status in calls.items():
        imported, code, out = _probe(*args)
        assert imported == [] and code == status, (args, imported, code, out)


def test_train_algo_help_lists_that_algorithms_options_and_flags_as_flags(cli):
    out = cli("train", "rmtl", "--help").stdout
    for option in ("--base TEXT", "--lam FLOAT", "--pretrain-epochs INT", "--faithful / --no-faithful",
                   "--critic-bottom-dims INT,...", "--lr FLOAT", "--batch-size INT"):  # fmt: skip
        assert option in out, option
    assert "Not used by rmtl, so refused" in out and "--epochs" in out.split("Not used by rmtl")[1]
    assert "<bool>" not in out  # --dry-run, --resume and --help take no value
    hac = cli("ablate", "hac", "--help").stdout
    assert "--actor-lr FLOAT" in hac and "--simulator TEXT" in hac and "--seeds" in hac
    refused = hac.split("Not used by hac")[1]
    assert "--lr" in refused and "--batch-size" not in refused  # an agent's --batch-size is its own
    assert "recrl train ALGO --help" in cli("train", "--help").stdout


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_the_option_tables_are_the_config_classes(algo):
    tables = options.tables()
    assert [r["name"] for r in tables["model"][algo]] == [
        f.name for f in dataclasses.fields(ALGORITHMS[algo].config_cls)
    ]
    assert catalog.entry(algo).name == algo


def test_negated_flags_turn_a_flag_off_and_nothing_else(cli):
    rows = [
        line.split("│") for line in cli("train", "unifiedrl", "--no-ptm", "--dry-run").stdout.splitlines()
    ]
    assert [r[2].strip() for r in rows if len(r) > 2 and r[1].strip() == "model.ptm"] == ["False"]
    for args, message in {
        ("--no-ptm", "3"): "--no-ptm takes no value, got '3'",
        ("--no-rounds",): "--no-rounds: --rounds is not a flag",
        ("--no-nosuch",): "unknown option --no-nosuch",
    }.items():
        res = cli("train", "unifiedrl", *args, "--dry-run")
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), res.output
