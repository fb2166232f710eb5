# One-command set-up: `make demo` trains and evaluates the main job (grasp), `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# torchvision (needed by the Qwen-VL image and video processors) is published for the CUDA build
# of torch only; it runs on a CPU as well. 0.29 pairs with torch 2.14.
TORCH := "torch==2.14.*" "torchvision==0.29.*"
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

PLUGINS := plugins/grasp plugins/reward plugins/vqa plugins/segment

$(STAMP): core/pyproject.toml $(PLUGINS:%=%/pyproject.toml) Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e "./core[quantization,tensorboard,test]" $(PLUGINS:%=-e ./%)
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/qvl run grasp train
	$(BIN)/qvl run grasp eval

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/bench_cli_startup.py
	$(BIN)/python benchmarks/bench_train_step.py
	$(BIN)/python benchmarks/bench_grasp_data.py
	$(BIN)/python benchmarks/bench_decoding.py
	$(BIN)/python benchmarks/bench_reward_data.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_reward_cached.py
	$(BIN)/python benchmarks/bench_data_path.py
	$(BIN)/python benchmarks/bench_vqa_generate.py
	$(BIN)/python benchmarks/bench_vqa_data.py

clean:
	rm -rf $(VENV) runs
