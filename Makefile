# One-command set-up: `make demo` trains and evaluates the main job (grasp), `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# torchvision (needed by the Qwen-VL image and video processors) is published for the CUDA build
# of torch only; it runs on a CPU as well. 0.29 pairs with torch 2.14.
TORCH := "torch==2.14.*" "torchvision==0.29.*"
STAMP := $(VENV)/.installed

.PHONY: setup system-packages demo test bench clean

PLUGINS := plugins/grasp plugins/reward plugins/vqa plugins/segment plugins/vla_flow

$(STAMP): core/pyproject.toml $(PLUGINS:%=%/pyproject.toml) Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e "./core[lerobot,quantization,tensorboard,test]" $(PLUGINS:%=-e ./%) \
		-e "./plugins/vla_flow[sim]" "pytest-xdist>=3.5" "deptry>=0.25"
	touch $(STAMP)

setup: system-packages $(STAMP)

# Miniworld (the simulator of qvl-vla-flow's `record`) renders with Mesa's OpenGL: headless through
# EGL (PYGLET_HEADLESS=true), or on a virtual screen with xvfb-run. Installed when apt-get can.
system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		! (command -v xvfb-run >/dev/null && dpkg -s libgl1-mesa-dri >/dev/null 2>&1); then \
		apt-get install -y -q xvfb libgl1-mesa-dri >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && apt-get install -y -q xvfb libgl1-mesa-dri >/dev/null) || \
		echo "note: could not install xvfb and libgl1-mesa-dri; Miniworld may not render"; fi

demo: setup
	$(BIN)/qvl run grasp train
	$(BIN)/qvl run grasp eval

# two workers: much of the suite waits on subprocesses (pip installs, accelerate launch, the CLI)
# that a second worker overlaps with computing (13 min instead of 18.5 on 2 cores)
test: setup
	$(BIN)/python -m pytest -n 2

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
	$(BIN)/python benchmarks/bench_vla_flow_features.py
	$(BIN)/python benchmarks/bench_vla_flow_inference.py
	$(BIN)/python benchmarks/bench_vla_flow_server.py
	$(BIN)/python benchmarks/bench_vla_flow_async.py

clean:
	rm -rf $(VENV) runs
