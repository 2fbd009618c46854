# darkvalley: `make run` sets everything up and opens the app; `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8501

.PHONY: setup run test bench clean-cache

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/python -m streamlit run app.py --server.port $(PORT)

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/generation.py

clean-cache:
	find cache -mindepth 1 ! -name README.md -exec rm -rf {} +
