# covidlens: set-up, demo, tests and benchmarks. Every target creates the virtual environment first.
VENV      ?= .venv
PYTHON    ?= python3
PY        := $(VENV)/bin/python
# torch/torchvision builds that this machine kind holds on disk; override for other machines.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
DATA      ?= $(abspath ../shared/data)
# Expanded once, so that train, evaluate and explain see the same run folder.
ifndef DEMO_NAME
DEMO_NAME := demo-$(shell date +%Y%m%d-%H%M%S)
endif
RUNS      ?= runs
# Four official-test slices (two COVID, two not) explained in the demo report.
DEMO_IMAGES = $(DATA)/ct/covid-ct/CT_COVID/2020.03.22.20040782-p25-1542.png \
              $(DATA)/ct/covid-ct/CT_COVID/2020.03.22.20040782-p25-1543.png \
              $(DATA)/ct/covid-ct/CT_NonCOVID/$(shell head -1 $(DATA)/ct/covid-ct/splits/NonCOVID/testCT_NonCOVID.txt 2>/dev/null) \
              $(DATA)/ct/covid-ct/CT_NonCOVID/$(shell sed -n 2p $(DATA)/ct/covid-ct/splits/NonCOVID/testCT_NonCOVID.txt 2>/dev/null)

.PHONY: setup demo test bench-accuracy bench-compare bench-mixing clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Train EfficientNet-Lite0 on the official COVID-CT split, evaluate on its test split, write a report.
demo: setup
	COVIDLENS_DATA=$(DATA) $(VENV)/bin/covidlens train --config configs/demo.yaml --name $(DEMO_NAME) --out-dir $(RUNS) --no-progress
	COVIDLENS_DATA=$(DATA) $(VENV)/bin/covidlens evaluate --checkpoint $(RUNS)/$(DEMO_NAME)/model --split test --out $(RUNS)/$(DEMO_NAME)/report
	$(VENV)/bin/covidlens explain --checkpoint $(RUNS)/$(DEMO_NAME)/model --method gradcam --out $(RUNS)/$(DEMO_NAME)/report/heatmaps $(DEMO_IMAGES)
	@echo "report folder: $(RUNS)/$(DEMO_NAME) (model/, config.yaml, training_curves.png, report/, report/heatmaps/index.html)"

# The browser test drives Debian's chromium, the DICOM output tests validate with dciodvfy (dicom3tools) and
# dcmdump (dcmtk); install them when missing (needs root; without them those tests skip).
test: setup
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "make test: chromium is not installed and could not be (not root?); the browser test will skip"
	@(command -v dciodvfy && command -v dcmdump) >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools dcmtk) >/dev/null 2>&1 \
		|| echo "make test: dicom3tools/dcmtk are not installed and could not be (not root?); the DICOM validator test will skip"
	COVIDLENS_TEST_DATA=$(DATA) $(PY) -m pytest -q

# The accuracy benchmark of docs/results.md (15-25 minutes a configuration on 2 CPU cores).
bench-accuracy: setup
	COVIDLENS_DATA=$(DATA) $(PY) benchmarks/covid_ct_accuracy.py configs/covid_ct_lite0_b.yaml \
		configs/covid_ct_lite0_c.yaml configs/covid_ct_lite0_d.yaml --ensemble --out reports/bench_bcd

# Issue 3's model comparison and mixing ablation (docs/results.md section 3; about 2 h and 30 min on 2 CPU cores).
bench-compare: setup
	COVIDLENS_DATA=$(DATA) $(PY) benchmarks/compare_models.py --config configs/compare_budget.yaml --out reports/compare \
		--reference dresunet_classifier
	COVIDLENS_DATA=$(DATA) $(PY) benchmarks/compare_models.py --config configs/compare_budget.yaml \
		--out reports/compare_resnet50 --models resnet50 resnet50_fpn_attention
bench-mixing: setup
	COVIDLENS_DATA=$(DATA) $(PY) benchmarks/compare_models.py --config configs/compare_budget.yaml --models resunet_fprm_classifier \
		--mixing none mixup cutmix mosaic --out reports/compare_mixing
