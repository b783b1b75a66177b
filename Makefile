# Everything runs inside a project-local virtual environment created on demand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck unit demo generate clean bench bench-quick

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Most end-to-end time is spent waiting on processes, so a few workers share 2 cores well.
PYTEST_ARGS ?= -n 4 --dist loadfile

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

# The sandbox: simulator, Kubernetes API emulator, operator and kubectl on this machine alone.
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/proxmox-vm-operator demo $(DEMO_ARGS)

# The benchmark (docs/benchmarks.md): the operator, the simulator and the Kubernetes API
# emulator as processes, timed; not part of `make test`. Writes bench-results/report.{md,json}.
# BENCH_ARGS: e.g. --only bulk --sizes 50 --nodes 4, or --operator-rev HEAD.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

# Files generated from code; tests fail when a committed copy is stale.
generate: $(STAMP)
	$(BIN)/proxmox-vm-operator crd > crds/proxmoxvm.yaml
	$(BIN)/proxmox-vm-operator apidoc > docs/api.md
	$(BIN)/python -m proxmox_vm_operator.monitoring.alerts manifests/monitoring
	$(BIN)/proxmox-vm-operator monitoring dashboard > manifests/monitoring/grafana-dashboard.json
	$(BIN)/python -m tests.gitops.argocd

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
