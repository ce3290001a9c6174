# covidlens: set-up, demo, tests and benchmarks. Every target creates the virtual environment first.
VENV      ?= .venv
PYTHON    ?= python3
PY        := $(VENV)/bin/python
# torch/torchvision builds that this machine kind holds on disk; override for other machines.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
DATA      ?= $(abspath ../shared/data)
RUNS      ?= runs
DEMO_OUT  ?= $(RUNS)/demo-screen
# Real studies the demo screens: a COVID-CT-MD DICOM series and two volumes (normal, community-acquired
# pneumonia), three NY-SBU lung slices, and three COVID and three normal radiographs of the TEST split of
# covid19-radiography (load_dataset's near-duplicate-group split), so the demo screens no training image.
CXR       = $(DATA)/cxr/covid19-radiography
DEMO_STUDIES = $(DATA)/ct/covid-ct-md/dicom-series/P001 \
               $(DATA)/ct/covid-ct-md/volumes/normal001.nii.gz $(DATA)/ct/covid-ct-md/volumes/cap001.nii.gz \
               $(DATA)/ct/ny-sbu-dicom/A002304/axial/19010112-135.dcm \
               $(DATA)/ct/ny-sbu-dicom/A046441/axial/19001111-045.dcm \
               $(DATA)/ct/ny-sbu-dicom/A072894/axial/19010103-40.dcm \
               $(CXR)/COVID/COVID-100.jpg $(CXR)/COVID/COVID-1013.jpg $(CXR)/COVID/COVID-1014.jpg \
               $(CXR)/Normal/Normal-10002.jpg $(CXR)/Normal/Normal-10053.jpg $(CXR)/Normal/Normal-10098.jpg

.PHONY: setup demo test bench-accuracy bench-compare bench-mixing clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Build every store model at its demo recipe (an installed one is reused; $COVIDLENS_HOME, default
# ~/.cache/covidlens), then screen the demo studies with them into one folder whose index.html links every
# study report and every model card.
demo: setup
	COVIDLENS_DATA=$(DATA) $(VENV)/bin/covidlens models build --all --recipe demo
	mkdir -p $(dir $(DEMO_OUT))
	$(VENV)/bin/covidlens screen $(DEMO_STUDIES) --out $(DEMO_OUT) --overwrite
	@echo "demo: open $(abspath $(DEMO_OUT))/index.html (a report per study, the card of every model used)"

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
