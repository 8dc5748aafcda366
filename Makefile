# vfrisk: the two README commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
EXTRAS := train,app,batch,interop,ray,track,dev
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO   := data/demo
SYSTEM_PACKAGES := dcmtk dicom3tools orthanc orthanc-dicomweb postgresql chromium chromium-driver poppler-utils

.PHONY: setup run test lint bench system-deps demo clean default-model cross-family

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[$(EXTRAS)]'
	touch $@

## setup: create .venv and install vfrisk with every extra (torch pinned to the on-disk 2.14.1)
setup: $(VENV)/.installed

## demo: make the small synthetic demo study if it is missing (never committed)
demo: setup
	@test -f $(DEMO)/manifest.csv || $(VENV)/bin/vfrisk synth --out $(DEMO) --n 2 --seed 20261128 --matrix 256 --workers 1 --lungs > /dev/null
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
## output is missing or older than their input; an interrupted synth or cache stage goes on where it stopped).
## It trains on a mixture of two independently built phantom families (A: data/synthetic/anatomy.py, B:
## data/synthetic/family_b) and reports each test family and the real scans separately.
COHORTS ?= cohorts
VF       := $(VENV)/bin/vfrisk
CONFIG   := training/configs/default.toml
TRAIN_A  := $(COHORTS)/train-a
TRAIN_B  := $(COHORTS)/train-b
TEST_SET := $(COHORTS)/test-fov
TEST_B   := $(COHORTS)/test-b
RUN      := $(COHORTS)/run-default
BASELINES = --compare $(COHORTS)/base_labs --compare $(COHORTS)/base_image
default-model: setup models/default/model.json $(COHORTS)/eval-test-fov/metrics.json $(COHORTS)/fov-check.json \
	$(COHORTS)/fov-check-b.json $(COHORTS)/eval-test/metrics.json

# 1. the training cohorts: family A with every kind of field of view and transitional spines (10 % four-lumbar and
#    10 % six-lumbar, against 4 % each in the test cohort; seed 1100); family B
#    (its own anatomy, fields of view and contrast phases; seed 3100)
$(TRAIN_A)/cohort.json:
	$(VF) synth --out $(TRAIN_A) --n 1200 --seed 1100 --matrix 160 --no-extras --fov mixed --transitional 0.1 --lungs
$(TRAIN_B)/cohort.json:
	$(VF) synth --family b --out $(TRAIN_B) --n 1200 --seed 3100 --matrix 160 --no-extras
# 2. decode every study into its cohort's training cache (study by study), then delete the cohort's DICOM files
$(COHORTS)/%/.pruned: $(COHORTS)/%/cohort.json
	$(VF) train --cohort $(COHORTS)/$* --out $(RUN) --config $(CONFIG) --cache-only
	$(PY) -m training.prune --cohort $(COHORTS)/$*
	touch $@
# 3. train on the mixture of both caches (a killed training restarts this stage only, from its last epoch)
$(RUN)/checkpoint.pt: $(TRAIN_A)/.pruned $(TRAIN_B)/.pruned $(CONFIG)
	$(VF) train --cohort $(TRAIN_A) --cohort $(TRAIN_B) --out $(RUN) --config $(CONFIG)
# 4. export the model and the two baselines fitted on the same split
models/default/model.json: $(RUN)/checkpoint.pt
	$(VF) export --run $(RUN) --out models/default
	$(VF) export --run $(RUN) --out $(COHORTS)/base_labs --variant labs_only
	$(VF) export --run $(RUN) --out $(COHORTS)/base_image --variant image_only
# 5. the test cohorts (seeds never used in training; every kind of field of view; one per family), their
#    evaluation through the product pipeline and the per-field-of-view checks; the standard whole-spine cohort
$(TEST_SET)/cohort.json:
	$(VF) synth --out $(TEST_SET) --n 500 --seed 2100 --matrix 160 --fov mixed --lungs
$(TEST_B)/cohort.json:
	$(VF) synth --family b --out $(TEST_B) --n 300 --seed 2200 --matrix 160
$(COHORTS)/eval-test-fov/metrics.json: models/default/model.json $(TEST_SET)/cohort.json
	$(VF) evaluate --model models/default --cohort $(TEST_SET) --out $(COHORTS)/eval-test-fov $(BASELINES)
$(COHORTS)/fov-check.json: models/default/model.json $(TEST_SET)/cohort.json
	$(PY) -m training.fov_check --cohort $(TEST_SET) --out $@
$(COHORTS)/fov-check-b.json: models/default/model.json $(TEST_B)/cohort.json
	$(PY) -m training.fov_check --cohort $(TEST_B) --out $@
$(COHORTS)/test/cohort.json:
	$(VF) synth --out $(COHORTS)/test --n 500 --seed 2000 --matrix 160 --lungs
$(COHORTS)/eval-test/metrics.json: models/default/model.json $(COHORTS)/test/cohort.json
	$(VF) evaluate --model models/default --cohort $(COHORTS)/test --out $(COHORTS)/eval-test $(BASELINES)

## cross-family: train on one family alone, test on the other (issue 19's generalisation table); needs the
## caches of step 2 and the test cohorts of step 5
CROSS := training/configs/cross.toml
$(COHORTS)/run-%-only/checkpoint.pt: $(COHORTS)/train-%/.pruned $(CROSS)
	$(VF) train --cohort $(COHORTS)/train-$* --out $(COHORTS)/run-$*-only --config $(CROSS)
$(COHORTS)/bundle-%-only/model.json: $(COHORTS)/run-%-only/checkpoint.pt
	$(VF) export --run $(COHORTS)/run-$*-only --out $(COHORTS)/bundle-$*-only
$(COHORTS)/cross-%.json: $(COHORTS)/bundle-%/model.json $(TEST_SET)/cohort.json $(TEST_B)/cohort.json
	$(PY) -m training.fov_check --cohort $(TEST_SET) --model $(COHORTS)/bundle-$* --out $(COHORTS)/cross-$*-on-a.json
	$(PY) -m training.fov_check --cohort $(TEST_B) --model $(COHORTS)/bundle-$* --out $(COHORTS)/cross-$*-on-b.json
	touch $@
cross-family: setup $(COHORTS)/cross-a-only.json $(COHORTS)/cross-b-only.json
# keep the pattern rules' intermediate files (make would delete a cross run's checkpoint and the caches' marks)
.PRECIOUS: $(COHORTS)/%/.pruned $(COHORTS)/run-%-only/checkpoint.pt $(COHORTS)/bundle-%-only/model.json
