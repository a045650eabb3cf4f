# Legion: the two commands are `make up` (run a fleet on the embedded NATS) and `make test`.
# Everything is installed from uv.lock (hash-pinned) into .venv; nothing is needed beyond python3 >= 3.11.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.legion-installed
FLEET  ?= examples/starter
PYTEST_ARGS ?=

.PHONY: up test lint fmt bench schema clean pin-uv help

help:
	@echo "make up      create .venv, install, start Legion on the embedded nats-server (Ctrl-C stops)"
	@echo "make test    create .venv, install, run every test lane this machine can run"
	@echo "make lint    ruff and mypy --strict on legion/"
	@echo "make bench   every benchmark (broker, agent, fleet start-up and memory, tail, vault fairness) with figures on stdout"

$(BIN)/uv: tools/uv.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r tools/uv.txt
	@touch $@

$(STAMP): $(BIN)/uv pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --locked --quiet --python $(BIN)/python
	@touch $@

install: $(STAMP)

up: $(STAMP)
	$(BIN)/legion -C $(FLEET) up

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check legion tests bench tools deploy
	$(BIN)/ruff format --check legion tests bench tools deploy
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format legion tests bench tools deploy
	$(BIN)/ruff check --fix legion tests bench tools deploy

bench: $(STAMP)
	$(BIN)/python bench/broker_bench.py
	$(BIN)/python bench/agent_bench.py
	$(BIN)/python bench/up_bench.py
	$(BIN)/python bench/tail_bench.py
	$(BIN)/python bench/fairness_bench.py

schema: $(STAMP)
	$(BIN)/legion contracts schema --out docs/schema

pin-uv:
	$(PYTHON) tools/pin_uv.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
