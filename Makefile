# One-command set-up: `make demo` trains and evaluates the main job (grasp), `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# torchvision (needed by the Qwen-VL image and video processors) is published for the CUDA build
# of torch only; it runs on a CPU as well. 0.29 pairs with torch 2.14.
TORCH := "torch==2.14.*" "torchvision==0.29.*"
STAMP := $(VENV)/.installed
# torch and torchvision alone (5 GB with the CUDA libraries): the development environment and each
# plugin's isolated environment (scripts/isolated_check.py) see them through a .pth file
TORCH_VENV ?= .venv-torch
TORCH_STAMP := $(TORCH_VENV)/.installed
PURELIB := import sysconfig; print(sysconfig.get_paths()["purelib"])

.PHONY: setup system-packages demo test test-together test-floors bench sweep clean

PLUGINS := plugins/grasp plugins/reward plugins/vqa plugins/segment plugins/vla_flow

$(TORCH_STAMP): Makefile
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TORCH_VENV)/bin/python -m pip install --quiet $(TORCH)
	touch $(TORCH_STAMP)

$(STAMP): $(TORCH_STAMP) core/pyproject.toml $(PLUGINS:%=%/pyproject.toml) Makefile
	$(PYTHON) -m venv $(VENV)
	$(TORCH_VENV)/bin/python -c '$(PURELIB)' > "$$($(BIN)/python -c '$(PURELIB)')/qvl_torch_base.pth"
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet -e "./core[lerobot,quantization,tensorboard,test]" $(PLUGINS:%=-e ./%) \
		-e "./plugins/vla_flow[sim]" "pytest-xdist>=3.5" "deptry>=0.25" "mlflow-skinny>=3" "wandb>=0.19"  # core/tests/test_trackers.py
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

# The core's and the cross-package tests in the development environment, then each plugin alone
# with the core, as users install them: wheels in a fresh environment, the plugin's own tests and
# its README's train/eval commands there (scripts/isolated_check.py). Two workers: much of the suite
# waits on subprocesses (pip installs, accelerate launch, the CLI) that a second worker overlaps
# with computing.
test: setup
	$(BIN)/python -m pytest -n 2 core/tests tests
	$(BIN)/python scripts/isolated_check.py --torch-base $(TORCH_VENV) --python $(PYTHON)

# the same with every requirement at the lowest version the distributions allow (name>=X -> X):
# shows that the floors they declare are true; slower (older wheels to fetch), not part of CI
test-floors: setup
	$(BIN)/python scripts/isolated_check.py --floors --torch-base $(TORCH_VENV) --python $(PYTHON) --work .isolated-floors

# every test at once in the development environment: quicker while iterating, blind to a
# dependency that only another distribution brings
test-together: setup
	$(BIN)/python -m pytest -n 2

# one plugin's default train + eval on seeds 0, 1 and 2 (long: not in bench), e.g. make sweep TASK=reward
sweep: setup
	$(BIN)/python benchmarks/seed_sweep.py $(TASK)

bench: setup
	$(BIN)/python benchmarks/bench_cli_startup.py
	$(BIN)/python benchmarks/bench_train_step.py
	$(BIN)/python benchmarks/bench_grasp_data.py
	$(BIN)/python benchmarks/bench_decoding.py
	$(BIN)/python benchmarks/bench_answer_probabilities.py
	$(BIN)/python benchmarks/bench_padding_free.py
	$(BIN)/python benchmarks/bench_reward_data.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_reward_cached.py
	$(BIN)/python benchmarks/bench_data_path.py --workers 0 --compile --steps 200
	$(BIN)/python benchmarks/bench_vqa_generate.py
	$(BIN)/python benchmarks/bench_vqa_data.py
	$(BIN)/python benchmarks/bench_vla_flow_features.py
	$(BIN)/python benchmarks/bench_vla_flow_inference.py
	$(BIN)/python benchmarks/bench_vla_flow_server.py
	$(BIN)/python benchmarks/bench_vla_flow_async.py

clean:
	rm -rf $(VENV) $(TORCH_VENV) .isolated .isolated-floors runs
