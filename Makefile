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

## bench: every benchmark in bench/ with the parameters of the README's figures (about 15 minutes on a shared
## 2-core machine; the benchmark studies are made once into .bench-data/, a few minutes more the first time);
## QUICK=1: small studies, one round each (a smoke run of every script)
bench: setup
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f $(if $(QUICK),--quick) || exit 1; done

## system-deps: Debian packages the tests need (DICOM validators, PACS, database, browser)
system-deps:
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

## default-model: reproduce the bundled default model, in stages that resume (make re-runs only the stages whose
## output is missing or older than their input; an interrupted synth or cache stage goes on where it stopped)
COHORTS ?= cohorts
VF       := $(VENV)/bin/vfrisk
CONFIG   := training/configs/default.toml
TRAIN_SET := $(COHORTS)/train-fov
TEST_SET  := $(COHORTS)/test-fov
RUN      := $(COHORTS)/run-default
BASELINES = --compare $(COHORTS)/base_labs --compare $(COHORTS)/base_image
default-model: setup models/default/model.json $(COHORTS)/eval-test-fov/metrics.json $(COHORTS)/fov-check.json \
	$(COHORTS)/eval-test/metrics.json

# 1. the training cohort: every kind of field of view, transitional spines (seed 1100)
$(TRAIN_SET)/cohort.json:
	$(VF) synth --out $(TRAIN_SET) --n 2500 --seed 1100 --matrix 160 --no-extras --fov mixed
# 2. decode every study into the training cache (study by study), then delete the cohort's DICOM files
$(TRAIN_SET)/.pruned: $(TRAIN_SET)/cohort.json
	$(VF) train --cohort $(TRAIN_SET) --out $(RUN) --config $(CONFIG) --cache-only
	$(PY) -m training.prune --cohort $(TRAIN_SET)
	touch $@
# 3. train on the cache (a killed training restarts this stage only)
$(RUN)/checkpoint.pt: $(TRAIN_SET)/.pruned $(CONFIG)
	$(VF) train --cohort $(TRAIN_SET) --out $(RUN) --config $(CONFIG)
# 4. export the model and the two baselines fitted on the same split
models/default/model.json: $(RUN)/checkpoint.pt
	$(VF) export --run $(RUN) --out models/default
	$(VF) export --run $(RUN) --out $(COHORTS)/base_labs --variant labs_only
	$(VF) export --run $(RUN) --out $(COHORTS)/base_image --variant image_only
# 5. the test cohort (a seed never used in training; every kind of field of view), its evaluation through the
#    product pipeline and the per-field-of-view check; the standard whole-spine cohort beside it
$(TEST_SET)/cohort.json:
	$(VF) synth --out $(TEST_SET) --n 500 --seed 2100 --matrix 160 --fov mixed
$(COHORTS)/eval-test-fov/metrics.json: models/default/model.json $(TEST_SET)/cohort.json
	$(VF) evaluate --model models/default --cohort $(TEST_SET) --out $(COHORTS)/eval-test-fov $(BASELINES)
$(COHORTS)/fov-check.json: models/default/model.json $(TEST_SET)/cohort.json
	$(PY) -m training.fov_check --cohort $(TEST_SET) --out $@
$(COHORTS)/test/cohort.json:
	$(VF) synth --out $(COHORTS)/test --n 500 --seed 2000 --matrix 160
$(COHORTS)/eval-test/metrics.json: models/default/model.json $(COHORTS)/test/cohort.json
	$(VF) evaluate --model models/default --cohort $(COHORTS)/test --out $(COHORTS)/eval-test $(BASELINES)
