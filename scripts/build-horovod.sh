#!/usr/bin/env bash
# Build Horovod 0.28.1 from PyPI's sdist against the TensorFlow installed in a venv.
#
#   scripts/build-horovod.sh [VENV]        (default: $VENV, else .venv)
#   GPU=1 scripts/build-horovod.sh [VENV]  with NCCL (GPU=0: without; unset: NCCL when the venv
#                                          has the CUDA wheels `GPU=1 scripts/setup.sh` installs)
#
# Horovod 0.28.1 is the last release and predates TF 2.21, so a plain
# `pip install horovod` fails. What it takes (see DEVELOPERS.md):
#   * --no-build-isolation, so the build sees the venv's TensorFlow, not a fresh one;
#   * TF's bundled third-party headers (include/external/*, and their src/ and
#     include/ subdirs) on -isystem: TF 2.21's headers include them by those roots;
#   * compat/ on the include path for the moved xla_builder.h (see the header there),
#     and for the GPU build, stream.h's AsGpuStreamValue (see that header).
# Built with Gloo and MPI (Debian's Open MPI): `horovodrun --gloo` launches over ssh, and
# `srun --mpi=pmix` starts the ranks itself through MPI (slurm-submit --launcher srun-pmix);
# tests/cluster runs both on a 3-node cluster.
#
# The GPU build (HOROVOD_GPU_OPERATIONS=NCCL) needs nvcc, CUDA headers, a static cudart
# and NCCL, all from the venv's pip wheels (no system CUDA toolkit):
#   * the CUDA 13.0 toolchain (nvidia/cu13: nvcc, crt, nvvm, cccl, cudart) compiles Horovod's
#     kernels and links its own static cudart 13.0 into Horovod. TF's CUDA 12 pip wheels have
#     no nvcc binary. Horovod shares only driver objects with TF (streams, events, device
#     pointers), so its runtime need not be TF's: it needs a driver >= 580 (CUDA 13.0), which
#     onnxruntime-gpu needs anyway and which runs TF's CUDA 12 too;
#   * NCCL is TF's nvidia-nccl-cu12 libnccl.so.2, linked shared, so TF and Horovod share one NCCL.
#   Neither wheel is a toolkit layout CMake can use as is (no lib64/, no libcudart.so or libnccl.so
#   link names), so $VENV/horovod-cuda holds symlinks that make one (HOROVOD_CUDA_HOME).
# A stamp records what it was built against, so a second run is a no-op.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-${VENV:-$root/.venv}}
[[ $venv == /* ]] || venv=$root/$venv
py=$venv/bin/python
[[ -x $py ]] || { echo "build-horovod.sh: no venv at $venv; run scripts/setup.sh first" >&2; exit 1; }
horovod_version=0.28.1
version() { "$py" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" 2>/dev/null; }
tf_version=$(version tensorflow) || { echo "build-horovod.sh: TensorFlow is not installed in $venv; run scripts/setup.sh" >&2; exit 1; }
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cuda=$site/nvidia/cu13
nccl=$site/nvidia/nccl
gpu=${GPU:-}
if [[ -z $gpu ]]; then
    gpu=0
    [[ -x $cuda/bin/nvcc && -d $nccl ]] && gpu=1
fi
command -v mpicxx >/dev/null || { echo "build-horovod.sh: mpicxx not found; apt-get install libopenmpi-dev (scripts/setup.sh does)" >&2; exit 1; }
want="horovod=$horovod_version tensorflow=$tf_version mpi=$(mpirun --version | head -1 | awk '{print $NF}')"
if [[ $gpu == 1 ]]; then
    for p in nvidia-cuda-nvcc nvidia-cuda-runtime nvidia-nccl-cu12; do
        [[ -n $(version $p) ]] || { echo "build-horovod.sh: $p is not installed in $venv; run GPU=1 VENV=$venv scripts/setup.sh" >&2; exit 1; }
    done
    # The GPU recipe (this script, compat/) is in the stamp too: a change to it rebuilds.
    recipe=$(cat "$root/scripts/build-horovod.sh" "$root"/compat/tensorflow/compiler/xla/*/*.h | sha256sum | cut -c1-12)
    want+=" gpu=NCCL nvcc=$(version nvidia-cuda-nvcc) nccl=$(version nvidia-nccl-cu12) recipe=$recipe"
fi
stamp=$venv/.horovod-build-stamp
if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && "$py" -c 'import horovod.tensorflow' 2>/dev/null; then
    echo "Horovod $horovod_version already built against TensorFlow $tf_version${want#*tensorflow=$tf_version}"
    exit 0
fi
tf_include=$("$py" -c 'import tensorflow as tf; print(tf.sysconfig.get_include())' 2>/dev/null)
flags="-I$root/compat"
for d in "$tf_include"/external/*/; do
    flags+=" -isystem $d"
    for sub in src include; do
        [[ -d $d$sub ]] && flags+=" -isystem $d$sub"
    done
done
gpu_env=(HOROVOD_GPU_OPERATIONS=)
if [[ $gpu == 1 ]]; then
    home=$venv/horovod-cuda
    rm -rf "$home"
    mkdir -p "$home/lib64" "$home/nccl/lib"
    # nvcc takes its toolkit root from the path it was run by (bin/..) and does not
    # resolve symlinks, so bin/ must be a real directory beside include/, nvvm/ and
    # lib64/ (were bin/ a symlink, bin/.. would be the wheel's nvidia/cu13 again).
    mkdir -p "$home/bin"
    ln -s "$cuda"/bin/* "$home/bin/"
    ln -s "$cuda/include" "$home/include"
    ln -s "$cuda/nvvm" "$home/nvvm"
    ln -s "$cuda"/lib/* "$home/lib64/"
    ln -s libcudart.so.13 "$home/lib64/libcudart.so"  # FindCUDAToolkit requires the link name
    ln -s lib64 "$home/lib"
    ln -s "$nccl/include" "$home/nccl/include"
    ln -s "$nccl/lib/libnccl.so.2" "$home/nccl/lib/libnccl.so"
    ln -s "$nccl/lib/libnccl.so.2" "$home/nccl/lib/libnccl.so.2"
    # With a shared NCCL, Horovod's CMake links no cudart at all: its cuda* calls, kernel
    # launches and fatbinary registration would then bind, at load time, to the CUDA 12
    # runtime stubs libtensorflow_framework.so.2 exports (which forward to libcudart.so.12),
    # a runtime older than the nvcc 13 that compiled the kernels. So link the CUDA 13.0
    # static cudart whole into Horovod and hide it (--exclude-libs): Horovod then always
    # calls the runtime its kernels were built for, and exports none of it to TF.
    gpu_env=(HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_CUDA_HOME="$home" HOROVOD_NCCL_HOME="$home/nccl"
             HOROVOD_NCCL_LINK=SHARED PATH="$home/bin:$PATH"
             LDFLAGS="-L$home/lib64 -Wl,--whole-archive -lcudart_static -Wl,--no-whole-archive -Wl,--exclude-libs,libcudart_static.a")
    echo "Building Horovod $horovod_version against TensorFlow $tf_version with NCCL $(version nvidia-nccl-cu12)" \
         "and nvcc $(version nvidia-cuda-nvcc) (Gloo and MPI; about 10 minutes)"
else
    echo "Building Horovod $horovod_version against TensorFlow $tf_version (Gloo and MPI; about 4 minutes)"
fi
# pip would call an installed Horovod (a CPU build, or one for an older TF) satisfied: drop it.
if [[ -n $(version horovod) ]]; then "$venv/bin/pip" uninstall -q -y horovod; fi
env CFLAGS="$flags" CXXFLAGS="$flags" \
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    HOROVOD_WITH_GLOO=1 HOROVOD_WITH_MPI=1 "${gpu_env[@]}" \
    MAKEFLAGS="-j$(nproc)" HOROVOD_BUILD_ARCH_FLAGS="" \
    "$venv/bin/pip" install --no-build-isolation --no-cache-dir --no-binary horovod \
    "horovod==$horovod_version"
"$venv/bin/horovodrun" --check-build
"$py" -c 'import horovod.tensorflow as hvd; assert hvd.mpi_built() and hvd.gloo_built()' 2>/dev/null ||
    { echo "build-horovod.sh: Horovod was built without MPI or Gloo, or does not load; see the build output above" >&2; exit 1; }
if [[ $gpu == 1 ]]; then
    # A GPU build that lost NCCL, or whose library cannot load, must not be stamped as done.
    lib=$("$py" -c 'import glob, horovod, os; print(*glob.glob(os.path.join(os.path.dirname(horovod.__file__), "tensorflow", "mpi_lib*.so")))')
    if nm -D --undefined-only "$lib" | grep -q -E ' (__)?cuda[A-Z]'; then
        echo "build-horovod.sh: $lib calls a CUDA runtime it does not contain (TF's CUDA 12 one at run time); the static cudart link failed" >&2
        exit 1
    fi
    "$py" -c 'import horovod.tensorflow as hvd; assert hvd.nccl_built(), "no NCCL"' 2>/dev/null ||
        { echo "build-horovod.sh: Horovod was built without NCCL or does not load; see the build output above" >&2; exit 1; }
fi
echo "$want" > "$stamp"
