"""lottery.nvml: Lightning's NVML probe variable is unset only where no GPU can exist."""

import os
import subprocess
import sys

import torch

from lottery import nvml


def test_importing_lottery_unsets_lightnings_nvml_variable_without_a_gpu():
    code = ("import os, pytorch_lightning; assert os.environ['PYTORCH_NVML_BASED_CUDA_CHECK'] == '1'; "
            "import lottery, torch; print(os.environ.get('PYTORCH_NVML_BASED_CUDA_CHECK'), torch.cuda.device_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out[1] == "0":
        assert out[0] == "None"  # no device: the per-step probe is gone
    else:
        assert out[0] == "1"  # a device: Lightning's fork-safe check stays


def test_nvml_variable_kept_when_a_device_exists(monkeypatch):
    monkeypatch.setenv(nvml.VARIABLE, "1")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert nvml.skip_nvml_probe_without_gpu() is False
    assert os.environ[nvml.VARIABLE] == "1"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert nvml.skip_nvml_probe_without_gpu() is True
    assert nvml.VARIABLE not in os.environ
    assert nvml.skip_nvml_probe_without_gpu() is False  # nothing left to do


def test_nvml_variable_untouched_by_a_cpu_only_torch(monkeypatch):
    monkeypatch.setenv(nvml.VARIABLE, "1")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    assert nvml.skip_nvml_probe_without_gpu() is False
    assert os.environ[nvml.VARIABLE] == "1"
