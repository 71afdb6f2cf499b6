# recrl: common tasks. `make install && make demo` on a fresh machine; `make test` for the fast suite.
PYTHON ?= python
# A CPU build of torch 2.13.0 is installed first where one is available locally; elsewhere pip takes the
# registry build of the same version. A torch already installed that satisfies the range is kept.
TORCH_SPEC ?= torch==2.13.0
DEMO_EVENTS ?= 30000

.PHONY: install demo test test-slow lint fmt bench ui clean

install:
	$(PYTHON) -m pip install --upgrade pip >/dev/null
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -e ".[dev]"
	$(PYTHON) -m recrl_cli algos mmoe >/dev/null  # caches the option tables, so every `--help` answers without importing torch

demo:
	recrl synth retailrocket --events $(DEMO_EVENTS) --seed 0
	recrl prepare retailrocket
	recrl train mmoe --epochs 3 --experiment recrl/demo --force  # --force: a second `make demo` trains again
	@echo "Browse the run with: make ui"

test:
	$(PYTHON) -m pytest

test-slow:
	$(PYTHON) -m pytest -m slow

lint:
	ruff check recrl_cli tests benchmarks
	ruff format --check recrl_cli tests benchmarks

fmt:
	ruff format recrl_cli tests benchmarks
	ruff check --fix recrl_cli tests benchmarks

bench:
	$(PYTHON) benchmarks/run_all.py

ui:
	recrl ui

clean:
	rm -rf runs mlruns mlflow.db benchmarks/out .pytest_cache
