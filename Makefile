# k8snode: test harness entry points.  Everything runs from the repository's .venv,
# which `make setup` (scripts/bootstrap.sh) creates along with the Docker engine.
PYTHON := .venv/bin/python
PY_DIRS := _modules _beacons _states _runners _output _wrapper _engines saltext setup.py images scripts tests bench docs

.PHONY: setup images test demo lint bench docs bundle

setup:
	bash scripts/bootstrap.sh $(BOOTSTRAP_FLAGS)

images: setup
	$(PYTHON) images/build.py
	$(PYTHON) images/vm_build.py

# All layers: tests/unit (no Docker), tests/functional, tests/integration (containers,
# and real-node VMs in tests/integration/vm: `pytest -m real_node` runs only those).
# The images build in the background from the moment the Docker engine is up, while the
# venv installs and unit and functional run (scripts/bootstrap.sh, tests/conftest.py).
# scripts/run_tests.py runs the real-node tier beside everything else (two pytest sessions).
test: BOOTSTRAP_FLAGS = --images-in-background
test: setup lint docs
	$(PYTHON) scripts/run_tests.py

demo: setup images
	$(PYTHON) scripts/demo.py

# salt-ssh ships the top-level files of _modules only: the package folded into one file,
# _modules/k8snode_agentless.py (tests/functional/test_agentless_bundle.py fails when stale).
bundle:
	$(PYTHON) scripts/agentless_bundle.py

SLS_FILES := $(shell find salt pillar -name '*.sls')

lint: setup
	$(PYTHON) -m ruff check $(PY_DIRS)
	$(PYTHON) -m ruff format --check $(PY_DIRS)
	.venv/bin/salt-lint $(SLS_FILES)

# The documentation site (Sphinx, the Salt extension template's layout): every warning is an
# error, so a docstring autodoc cannot read, or a reference that no longer lists exactly the
# loader's functions, breaks the build (and make test).
docs: setup
	$(PYTHON) -m sphinx -W --keep-going -b html docs docs/_build/html

# Ratios measured side by side (results: bench/RESULTS.md); not part of make test.
bench: setup images
	$(PYTHON) bench/run.py
	$(PYTHON) bench/drift.py
	$(PYTHON) bench/fleet_memory.py
	$(PYTHON) bench/storm.py --minions 100
	$(PYTHON) bench/storm.py --minions 100 --engine
	$(PYTHON) bench/storm.py --minions 1000 --engine
	$(PYTHON) bench/swarm.py
