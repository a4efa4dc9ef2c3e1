# The two commands of the README: `make demo` and `make test`. Both are
# idempotent: the venv is rebuilt only when a pyproject or the lock changes,
# data preparation and training skip finished work.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := core data teachers students vae eval cli
export MMTHESIS_HOME ?= $(CURDIR)/.mmthesis
MM := $(BIN)/mmthesis

.PHONY: install demo test test-fast lint clean-data

$(STAMP): requirements/lock.txt requirements/no-deps.txt pyproject.toml $(wildcard packages/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements/lock.txt
	$(BIN)/pip install --quiet --no-deps -r requirements/no-deps.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation $(foreach p,$(PACKAGES),-e packages/mmthesis-$(p)) -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(MM) data prepare shapes
	$(MM) data prepare emoji
	$(MM) data prepare imagenet --scale smoke
	$(MM) data prepare openwebtext --scale smoke
	$(MM) data prepare glue --scale smoke
	$(MM) data prepare coco --scale smoke
	$(MM) data prepare cc3m --scale smoke
	$(MM) data prepare cc12m --scale smoke
	$(MM) reproduce table-3 --scale smoke
	$(MM) reproduce table-4 --scale smoke
	$(MM) reproduce table-5
	$(MM) reproduce table-9
	$(MM) reproduce table-25 --scale smoke

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check packages tests benchmarks

clean-data:
	rm -rf $(MMTHESIS_HOME)
