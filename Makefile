# Everything runs inside a project-local virtual environment created on demand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck unit demo generate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests

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

# Files generated from code; tests fail when a committed copy is stale.
generate: $(STAMP)
	$(BIN)/proxmox-vm-operator crd > crds/proxmoxvm.yaml
	$(BIN)/proxmox-vm-operator apidoc > docs/api.md
	$(BIN)/python -m proxmox_vm_operator.monitoring.alerts manifests/monitoring
	$(BIN)/proxmox-vm-operator monitoring dashboard > manifests/monitoring/grafana-dashboard.json
	$(BIN)/python -m tests.gitops.argocd

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
