# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first.
# torch is installed pinned, before the package, so that pip takes the CPU build on this disk
# instead of resolving an unpinned `torch` to a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: venv test demo bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e ".[dev,lightgbm,scale]"
	touch $(STAMP)

test: $(STAMP)
	-command -v tshark >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark) >/dev/null 2>&1)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO_OUT)

# The four-axis comparison on both tasks of ../shared/data/TASKS.md (see benchmarks/bench_tasks.py).
bench: $(STAMP)
	$(PY) benchmarks/bench_tasks.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
