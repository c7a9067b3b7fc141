#!/usr/bin/env bash
# Install everything this project needs on a fresh Debian 12 machine, idempotently.
#
#   scripts/setup.sh                          (make setup calls this; CPU unless a driver is found)
#   GPU=1 scripts/setup.sh                    force the GPU install (works without a GPU: it only builds)
#   GPU=0 scripts/setup.sh                    force the CPU install on a GPU machine
#   VENV=../gpu-venv GPU=1 scripts/setup.sh      a venv elsewhere (default: .venv in the repo)
#
# 1. Debian packages: compilers and cmake (Horovod's build), Open MPI (Horovod's MPI
#    controller, for srun launches), the Fashion-MNIST IDX files (dataset-fashion-mnist:
#    the built-in real data), slurm-wlm + munge + openssh-server (the tests run a real
#    SLURM, on one node and on 3 simulated nodes that horovodrun reaches over ssh),
#    chromium + chromium-driver (the run report's page is checked in a real browser).
# 2. A virtual environment at $VENV with the project and its pinned dependencies
#    (constraints.txt). With a GPU, also TensorFlow's CUDA 12 wheels, the CUDA 13
#    libraries onnxruntime-gpu loads, and a CUDA 13 compiler, all from pip and all
#    pinned in constraints-gpu.txt: no system CUDA toolkit is needed.
# 3. Horovod 0.28.1 built against that TensorFlow (scripts/build-horovod.sh):
#    Gloo and MPI (Debian's Open MPI); with a GPU also NCCL (HOROVOD_GPU_OPERATIONS=NCCL).
# Each step is skipped when already done, so a second run takes seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${VENV:-.venv}
[[ $venv == /* ]] || venv=$root/$venv

# GPU: explicit 1/0, else on when an NVIDIA driver answers (nvidia-smi present is
# not enough: it exists, failing, on machines whose driver is not loaded).
gpu=${GPU:-}
if [[ -z $gpu ]]; then
    gpu=0
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
        gpu=1
        echo "NVIDIA driver found (nvidia-smi): GPU install (GPU=0 scripts/setup.sh for the CPU one)"
    fi
fi
if [[ $gpu != 0 && $gpu != 1 ]]; then
    echo "setup.sh: GPU=$gpu is not 0 or 1; run GPU=1 scripts/setup.sh (or GPU=0, or leave GPU unset)" >&2
    exit 2
fi

debs=(build-essential cmake libopenmpi-dev openmpi-bin dataset-fashion-mnist slurm-wlm munge openssh-server
      chromium chromium-driver)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "Installing Debian packages: ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
python=${PYTHON:-python3}
if [[ ! -x $venv/bin/python ]]; then
    echo "Creating $venv with $($python --version)"
    "$python" -m venv "$venv"
fi

# What goes into the venv. The GPU extras take their versions from constraints.txt
# (one place for the TensorFlow and onnxruntime pins); constraints-gpu.txt pins every
# wheel they add (its header says how it was resolved and how to regenerate it).
#   tensorflow[and-cuda]  TF 2.21's CUDA 12 wheels: cudart, cuDNN 9, cuBLAS, NCCL, ...
#   onnxruntime-gpu[cuda] the CUDA 13 runtime, nvrtc, cuFFT, cuRAND that onnxruntime-gpu
#                         (built for CUDA 13.0) loads. Not its [cudnn] extra: nvidia-cudnn-cu13
#                         and TF's nvidia-cudnn-cu12 both install nvidia/cudnn/lib/libcudnn*.so.9,
#                         so one would overwrite the other; both frameworks share the cu12 one.
#   cuda-toolkit[...]     a CUDA 13.0 compiler (nvcc, crt, nvvm, cccl) and cudart for Horovod's
#                         build, plus the cuBLAS 13 onnxruntime-gpu needs and its extra omits.
#                         13.0, not the newest 13.x: it is what onnxruntime-gpu was built with,
#                         and its PTX loads on the oldest CUDA 13 driver (580).
reqs=(-e ".[dev]")
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
constraints=(-c constraints.txt)
if [[ $gpu == 1 ]]; then
    [[ -f constraints-gpu.txt ]] || { echo "setup.sh: constraints-gpu.txt is missing; restore it from git" >&2; exit 1; }
    pin() {  # the version pinned for package $1 in constraints file $2
        grep -m1 -E "^$1==" "$2" | cut -d= -f3 | grep . ||
            { echo "setup.sh: $2 pins no $1; restore the $1==VERSION line from git" >&2; exit 1; }
    }
    tf=$(pin tensorflow constraints.txt)
    ort=$(pin onnxruntime-gpu constraints.txt)
    cuda=$(pin cuda-toolkit constraints-gpu.txt)
    reqs+=("tensorflow[and-cuda]==$tf" "onnxruntime-gpu[cuda]==$ort" "cuda-toolkit[nvcc,cccl,cublas,cufft,curand]==$cuda")
    constraints+=(-c constraints-gpu.txt)
    want=$(cat pyproject.toml constraints.txt constraints-gpu.txt | sha256sum | cut -d' ' -f1)" gpu"
fi
stamp=$venv/.deps-stamp
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "Installing the project and its pinned dependencies into $venv$([[ $gpu == 1 ]] && echo ' (GPU: 4.7 GB of wheels, 8.5 GB installed)')"
    "$venv/bin/pip" install -q --upgrade pip setuptools wheel
    "$venv/bin/pip" install -q "${constraints[@]}" "${reqs[@]}"
    echo "$want" > "$stamp"
fi
GPU=$gpu scripts/build-horovod.sh "$venv"
