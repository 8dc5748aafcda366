# vfrisk: the two README commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
EXTRAS := train,app,batch,interop,ray,track,dev
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO   := data/demo
SYSTEM_PACKAGES := dcmtk dicom3tools orthanc orthanc-dicomweb postgresql chromium chromium-driver poppler-utils

.PHONY: setup run test lint bench system-deps demo clean default-model

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[$(EXTRAS)]'
	touch $@

## setup: create .venv and install vfrisk with every extra (torch pinned to the on-disk 2.14.1)
setup: $(VENV)/.installed

## demo: make the small synthetic demo study if it is missing (never committed)
demo: setup
	@test -f $(DEMO)/manifest.csv || $(VENV)/bin/vfrisk synth --out $(DEMO) --n 2 --seed 20261128 --matrix 256 --workers 1 > /dev/null
	@echo "demo study: $(DEMO)/studies/S00000"

## run: start the web app on 127.0.0.1 with the bundled default model, ready for the demo study
run: setup demo
	$(VENV)/bin/vfrisk serve --demo-user

## test: the whole test suite
test: setup
	$(PY) -m pytest -q

## lint: ruff and mypy
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy inference clinical data training models vfrisk interop webapp app.py

## bench: every benchmark in bench/
bench: setup
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

## system-deps: Debian packages the tests need (DICOM validators, PACS, database, browser)
system-deps:
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

## default-model: reproduce the bundled default model (synthetic cohort -> train -> export -> evaluate)
COHORTS ?= cohorts
BASELINES = --compare $(COHORTS)/base_labs --compare $(COHORTS)/base_image
default-model: setup
	$(VENV)/bin/vfrisk synth --out $(COHORTS)/train --n 2000 --seed 1000 --matrix 160 --no-extras
	$(VENV)/bin/vfrisk train --cohort $(COHORTS)/train --out $(COHORTS)/run-default --config training/configs/default.toml
	$(VENV)/bin/vfrisk export --run $(COHORTS)/run-default --out models/default
	$(VENV)/bin/vfrisk export --run $(COHORTS)/run-default --out $(COHORTS)/base_labs --variant labs_only
	$(VENV)/bin/vfrisk export --run $(COHORTS)/run-default --out $(COHORTS)/base_image --variant image_only
	$(VENV)/bin/vfrisk synth --out $(COHORTS)/test --n 1000 --seed 2000 --matrix 160
	$(VENV)/bin/vfrisk evaluate --model models/default --cohort $(COHORTS)/test --out $(COHORTS)/eval-test $(BASELINES)
	$(VENV)/bin/vfrisk synth --out $(COHORTS)/test-wide --n 600 --seed 3000 --matrix 160 --wide
	$(VENV)/bin/vfrisk evaluate --model models/default --cohort $(COHORTS)/test-wide --out $(COHORTS)/eval-wide $(BASELINES)
	$(VENV)/bin/vfrisk synth --out $(COHORTS)/test-large --n 3000 --seed 4000 --matrix 160 --no-extras
	$(VENV)/bin/vfrisk evaluate --model models/default --cohort $(COHORTS)/test-large --out $(COHORTS)/eval-large $(BASELINES)
