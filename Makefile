# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The dev/CI pair of PyTorch releases; newer pairs download gigabytes, other pairs fail to import.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install-demo install-dev lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install-demo: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,torch]" $(TORCH_PINS)

demo: install-demo
	$(BIN)/bplab demo

test: install-dev
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
