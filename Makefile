# tfglo: the two commands of the README are `make demo` and `make test`.
# Both create the virtual environment in .venv when it is missing and reuse it otherwise.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfglo-installed
DEMO_DIR ?= outputs/demo
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: venv test test-all lint format demo bench clean

$(STAMP): setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tfglo needs Python >= 3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The default suite: everything but tests marked slow (under 15 minutes on 2 cores). Two
# pytest-xdist workers, one test file each at a time (a file's module fixtures are built once).
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile

# Everything, including the slow quality and multi-process tests.
test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: $(STAMP)
	$(PY) -m tfglo.demo --output=$(DEMO_DIR)

bench: $(STAMP)
	$(PY) -m tfglo.bench

clean:
	rm -rf $(VENV) outputs build *.egg-info
