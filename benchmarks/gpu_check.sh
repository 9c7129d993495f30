#!/usr/bin/env bash
# The checks that need a GPU, as one script for a machine that has one (the device tool lends an H200 to some
# sessions; under 8 minutes there): the CUDA tests, a DDP test on the GPU's machine, and the GPU benchmarks.
#   bash benchmarks/gpu_check.sh            # from the repository root, with the project installed
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no GPU: nothing to check"; exit 1; }
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
status=0
# CUDA tests (sparse execution and semi-structured export on the GPU), then the DDP tests (two ranks: one GPU)
timeout 180 python -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_export.py || status=1
timeout 120 python -m pytest -q -p no:cacheprovider -k ddp tests/callback || status=1
# the GPU figures: ticket speed (with the 2:4 semi-structured rows) and epoch speed against a plain loop
timeout 150 python benchmarks/ticket_speed.py --device cuda --pairs 10 --conv-pairs 3 || status=1
timeout 90 python benchmarks/epoch_speed.py --device cuda --repeats 1 || status=1
exit $status
