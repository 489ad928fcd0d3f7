# Quick start: `make run` (set up, convert EdgeFace-XXS, align and verify the AT&T faces) and `make test`.
PYTHON ?= python3
VENV ?= .venv
ASSETS ?= ../shared/assets
# Official checkpoints: a folder (this project's machines have one in $(ASSETS)); empty means download from the Hub.
HFR_HF_WEIGHTS_DIR ?= $(if $(wildcard $(ASSETS)/weights/edgeface),$(ASSETS)/weights/edgeface,)
FACES ?= $(ASSETS)/faces/att
RUNS ?= runs

BIN := $(VENV)/bin
export HFR_HF_WEIGHTS_DIR

.PHONY: setup run test clean

$(BIN)/hfr-hf: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

setup: $(BIN)/hfr-hf

run: setup
	$(BIN)/hfr-hf convert xxs --output $(RUNS)/edgeface-xxs --overwrite
	$(BIN)/hfr-hf verify-folder $(FACES) --model $(RUNS)/edgeface-xxs --align --json $(RUNS)/att_verification.json

test: setup
	HFR_HF_ASSETS=$(ASSETS) $(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(RUNS)
