# Two commands on a fresh machine:  `make finetune` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data/ravdess-16k
MODEL  ?= ../shared/models/whisper-tiny.en
OUT    ?= runs/finetune
ARGS   ?=

.PHONY: install finetune test test-slow lint docs

# torch first, from the local CPU wheel: an unpinned torch would pull a multi-GB CUDA build.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,report,export,docs]"
	touch $@

install: $(BIN)/.installed

finetune: install
	$(BIN)/accelerate launch --num_processes 1 examples/finetune.py \
		--model_name_or_path $(MODEL) $(if $(DATA),--data_dir $(DATA)) --output_dir $(OUT) $(ARGS)

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check ser_hf examples tests bench
	$(BIN)/ruff format --check ser_hf examples tests bench

# The documentation site (docs/, mkdocs.yml), API reference from the docstrings; fails on any warning.
docs: install
	$(BIN)/mkdocs build --strict --site-dir site
