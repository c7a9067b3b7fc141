#!/usr/bin/env bash
# The GPU check (bench/gpucheck.py) on a machine with only Python 3 and NVIDIA's CUDA 13 pip
# libraries (nvidia-cuda-runtime, nvidia-cublas, nvidia-cudnn-cu13, ...): no TensorFlow, no onnx, no
# network. The exported AlexNet and its float16 and int8 variants come from scripts/gpu-check-models
# (their graphs alone, 0.4 MB; the weights are regenerated there from a seed).
#
#   scripts/gpu-check.sh onnxruntime_gpu-1.31.1-cp312-*.whl [numpy-*.whl scipy-*.whl] [--json PATH]
#   scripts/gpu-check.sh --cpu-only --batches 1,8           the CPU half, with python3's own packages
#
# 1. The wheels given are installed into a temporary directory (pip --target --no-index --no-deps:
#    nothing is fetched). Give numpy's and scipy's too where python3 lacks them
#    (`pip download --only-binary :all: --python-version 3.12 numpy scipy` on a machine with network).
# 2. The libraries of NVIDIA's pip wheels go on LD_LIBRARY_PATH: onnxruntime.preload_dlls looks for
#    them beside onnxruntime only, and that is the temporary directory here.
# 3. python -m bench.gpucheck scripts/gpu-check-models --json gpu-check.json (default; every other
#    argument is passed on), under an 8-minute limit. It writes one JSON and prints a table; exit 1
#    if a check failed, 2 on bad input, 124 past the limit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
wheels=() args=()
for arg in "$@"; do
    case $arg in
        *.whl) [[ -f $arg ]] || { echo "gpu-check.sh: no wheel at $arg: pass the path of a .whl file" >&2; exit 2; }
               wheels+=("$(realpath "$arg")") ;;
        *) args+=("$arg") ;;
    esac
done
[[ " ${args[*]-} " == *" --json "* ]] || args+=(--json gpu-check.json)

site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
if ((${#wheels[@]})); then
    "$python" -m pip install -q --no-index --no-deps --disable-pip-version-check --target "$site" "${wheels[@]}"
fi
export PYTHONPATH=$site:$root${PYTHONPATH:+:$PYTHONPATH}
for module in numpy scipy onnxruntime; do
    "$python" -c "import $module" 2>/dev/null || {
        echo "gpu-check.sh: $python cannot import $module: pass its wheel (.whl) as an argument" >&2; exit 2; }
done
nvidia_libs=$("$python" -c 'import glob, nvidia
print(":".join(d for p in nvidia.__path__ for d in sorted(glob.glob(p + "/*/lib"))))' 2>/dev/null || true)
export LD_LIBRARY_PATH=$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cd "$root"
exec timeout 480 "$python" -m bench.gpucheck scripts/gpu-check-models "${args[@]}"
