# pacslab: `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pacslab-installed
KERNEL := $(VENV)/share/jupyter/kernels/pacslab/kernel.json

.PHONY: setup system-packages demo test lint bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(KERNEL): $(STAMP) kernels/pacslab/kernel.json
	$(BIN)/jupyter kernelspec install --sys-prefix --name pacslab kernels/pacslab >/dev/null
	touch $(KERNEL)

setup: $(STAMP) $(KERNEL)

system-packages:
	bash scripts/system-packages.sh

demo: setup
	$(BIN)/pacslab demo

test: system-packages setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: system-packages setup
	$(BIN)/python -m bench

soak: system-packages setup
	$(BIN)/python -m bench soak

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
