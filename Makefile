# Two commands do all set-up on a fresh Debian machine:
#   make demo   - the main job on the built-in local lab
#   make test   - the whole test suite (what CI runs), the Vagrant VM rehearsal last
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= lab-data

.PHONY: demo test test-unit lint format system-deps venv docs clean wheel-test vagrant-deps vagrant-box vagrant-up vagrant-down test-vagrant

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# Bytecode for the package, as pip writes it for a regular install: every command starts faster.
	$(BIN)/python -m compileall -q orchestrator orchestrator_lab
	touch $@

system-deps:
	./scripts/install-system-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: system-deps venv lint
	ORCHESTRATOR_NO_SKIP=1 $(BIN)/pytest
	$(MAKE) wheel-test
	$(MAKE) test-vagrant

# The wheel as a user installs it (a fresh virtualenv, no extras), rehearsed outside the source tree.
wheel-test: system-deps
	PYTHON=$(PYTHON) ./scripts/wheel-rehearsal.sh

# The Vagrant lab (docs/vagrant.md): real Debian VMs under libvirt, inside a network namespace.
vagrant-deps:
	./scripts/install-system-deps.sh --vagrant

vagrant-box: vagrant-deps venv
	./scripts/vagrant-box.sh

vagrant-up: vagrant-box
	./scripts/vagrant-lab.sh up

vagrant-down:
	./scripts/vagrant-lab.sh down

# Boots the four machines, runs the whole rehearsal on them, destroys everything (a trap, on failure too).
test-vagrant: venv
	./scripts/vagrant-test.sh

# The unit part only (tests/unit: no root, no lab, no system packages), in about a minute.
test-unit: venv
	ORCHESTRATOR_NO_SKIP=1 $(BIN)/pytest tests/unit -m "not lab"

demo: system-deps venv
	DEMO_DIR=$(DEMO_DIR) PATH="$(CURDIR)/$(BIN):$$PATH" ./scripts/demo.sh

# Regenerate the command reference, docs/commands.md, from --help (a test keeps them in step).
docs: venv
	$(BIN)/python scripts/cli_reference.py --write

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	-$(BIN)/orchestrator lab down --dir $(DEMO_DIR) 2>/dev/null
	-./scripts/vagrant-lab.sh down
	rm -rf $(VENV) runs reports test-artifacts .pytest_cache .ruff_cache .import_linter_cache .grimp_cache
