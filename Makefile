# The two commands a newcomer needs (README.md):
#   make demo   install everything, then train -> export -> benchmark -> report on Fashion-MNIST
#   make test   install everything, then run the test suite
.PHONY: setup demo test test-fast check-gpu-build
setup:
	scripts/setup.sh

demo: setup
	scripts/demo.sh

test: setup
	.venv/bin/pytest

# Everything but real training, SLURM and Horovod runs: a few minutes.
test-fast: setup
	.venv/bin/pytest -m "not slow and not distributed and not slurm"

# Opt-in, never part of `make test` (4.7 GB of wheels, about 15 minutes the first time):
# the GPU install path, GPU=1 scripts/setup.sh, into a venv outside the repo, then what it
# promises: Horovod built with NCCL (build-horovod.sh asserts it too), and TensorFlow's CUDA 12
# libraries loaded beside onnxruntime-gpu's CUDA 13 ones in one process. Needs no GPU.
GPU_VENV ?= $(abspath ../gpu-venv)
check-gpu-build:
	GPU=1 VENV=$(GPU_VENV) scripts/setup.sh
	$(GPU_VENV)/bin/horovodrun --check-build | grep -F '[X] NCCL'
	TF_CPP_MIN_LOG_LEVEL=3 $(GPU_VENV)/bin/python -c 'import os, tensorflow as tf, onnxruntime as ort; \
		assert tf.test.is_built_with_cuda(); ort.preload_dlls(); maps = open(f"/proc/{os.getpid()}/maps").read(); \
		missing = [l for l in ("cuda_runtime/lib/libcudart.so.12", "cu13/lib/libcudart.so.13", "cu13/lib/libcublasLt.so.13", \
			"cudnn/lib/libcudnn.so.9") if l not in maps]; assert not missing, missing; \
		print("CUDA 12 (TensorFlow) and CUDA 13 (onnxruntime-gpu) libraries load side by side")'
