# conductor — every recipe is a one-liner; the logic lives in Python.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
QUIET := 2>&1 | (grep -v "is ignored" || true)
PY_SYS ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
SPEC ?= experiments/digits-cnn.yaml
STAMP := $(VENV)/.installed
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_LOGGING_LEVEL ?= WARNING

.DEFAULT_GOAL := help
.PHONY: help install run runs test test-fast lint sweep dashboard predict serve cluster-up cluster-down cluster-status submit bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## make .venv: torch (CPU build; TORCH=... overrides) first, then the project; no-op when nothing changed

$(STAMP): pyproject.toml
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(QUIET)
	$(PY) -m pip install -q "$(TORCH)" $(QUIET)
	$(PY) -m pip install -q -e ".[dev]" "$(TORCH)" $(QUIET)
	$(PY) -c "import torch, ray, prefect, prefect_dask, dask.distributed, optuna, wandb, flows"
	$(PY) -c "from flows.engines import build_template; build_template()"  # a new home copies Prefect's database
	touch $(STAMP)

run: install ## run the main job: experiments/digits-cnn.yaml (SPEC=... overrides) end to end
	$(VENV)/bin/conductor run $(SPEC)

runs: install ## list registered runs, newest first (conductor runs; show/compare/rerun/sync RUN for more)
	$(VENV)/bin/conductor runs

test: install ## run every test (unit, integration, e2e)
	$(PY) -m pytest tests -q --durations=12

test-fast: install ## unit tests only
	$(PY) -m pytest tests/unit -q

lint: install ## ruff
	$(VENV)/bin/ruff check flows tasks models cluster tests benchmarks

sweep: install ## 20-trial sweep of SPEC (digits-cnn by default), 2 at a time on Ray; RESUME=1 continues it
	$(VENV)/bin/conductor sweep $(SPEC) $(if $(RESUME),--resume,)

dashboard: install ## optuna-dashboard on the sweep storage, bound to 127.0.0.1
	$(VENV)/bin/conductor dashboard

predict: install ## batch inference: make predict RUN=runs/<name>/<id> INPUT=file.csv OUT=preds.csv
	$(VENV)/bin/conductor predict $(RUN) $(INPUT) --out $(OUT)

serve: install ## online inference: make serve RUN=runs/<name>/<id> [PORT=8000] (Ray Serve on 127.0.0.1; Ctrl-C stops it)
	$(VENV)/bin/conductor serve $(RUN) $(if $(PORT),--port $(PORT),)

cluster-up: install ## start a local cluster on 127.0.0.1 (Prefect server + worker, Ray head + node, Dask)
	$(VENV)/bin/conductor cluster up

cluster-down: install ## stop exactly the processes cluster-up started
	$(VENV)/bin/conductor cluster down

cluster-status: install ## show each cluster service and whether it answers
	$(VENV)/bin/conductor cluster status

submit: install ## submit SPEC as a Prefect flow run to the cluster and wait for it
	$(VENV)/bin/conductor submit $(SPEC) --wait

bench: install ## ratio benchmarks (benchmarks/)
	$(PY) benchmarks/run_all.py

clean: ## remove runs/, caches and build outputs (keeps .venv)
	rm -rf runs .prefect .pytest_cache .ruff_cache build *.egg-info
