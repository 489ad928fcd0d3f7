# Quick start: `make run` (set up, convert EdgeFace-XXS, then the pseudo-thermal xEdgeFace experiment: protocol from
# the AT&T and Yale faces, frozen vs adapted, report, adapter and plots in runs/xedgeface) and `make test`.
PYTHON ?= python3
VENV ?= .venv
ASSETS ?= ../shared/assets
# Official checkpoints: a folder (this project's machines have one in $(ASSETS)); empty means download from the Hub.
HFR_HF_WEIGHTS_DIR ?= $(if $(wildcard $(ASSETS)/weights/edgeface),$(ASSETS)/weights/edgeface,)
FACES ?= $(ASSETS)/faces
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
	$(BIN)/hfr-hf experiment --model $(RUNS)/edgeface-xxs --att $(FACES)/att --yale $(FACES)/yale --thermal $(ASSETS)/thermal --output $(RUNS)/xedgeface

test: setup
	HFR_HF_ASSETS=$(ASSETS) $(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(RUNS)
