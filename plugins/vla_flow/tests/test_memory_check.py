"""memory-check measures a GPU; without one it says so instead of guessing."""

import pytest
import torch

import qvl


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible: the check would run")
def test_memory_check_on_a_cpu_says_it_needs_a_gpu(qvl_run_stage):
    with pytest.raises(qvl.UserError, match="needs a CUDA device"):
        qvl_run_stage("vla_flow", "memory-check")
