#!/usr/bin/env bash
# Build Horovod 0.28.1 from PyPI's sdist against the TensorFlow installed in a venv.
#
#   scripts/build-horovod.sh [VENV]        (default: .venv)
#
# Horovod 0.28.1 is the last release and predates TF 2.21, so a plain
# `pip install horovod` fails. What it takes (see DEVELOPERS.md):
#   * --no-build-isolation, so the build sees the venv's TensorFlow, not a fresh one;
#   * TF's bundled third-party headers (include/external/*, and their src/ and
#     include/ subdirs) on -isystem: TF 2.21's headers include them by those roots;
#   * compat/ on the include path for the moved xla_builder.h (see the header there).
# Built with Gloo only: Debian's OpenMPI adds a dependency for no test we can run
# here, and horovodrun --gloo covers one host and many hosts alike.
# A stamp records the TF version it was built against, so a second run is a no-op.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$root/.venv}
py=$venv/bin/python
horovod_version=0.28.1
tf_version=$("$py" -c 'import importlib.metadata as m; print(m.version("tensorflow"))')
stamp=$venv/.horovod-build-stamp
want="horovod=$horovod_version tensorflow=$tf_version"
if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && "$py" -c 'import horovod.tensorflow' 2>/dev/null; then
    echo "Horovod $horovod_version already built against TensorFlow $tf_version"
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
echo "Building Horovod $horovod_version against TensorFlow $tf_version (Gloo, no MPI; about 2 minutes)"
CFLAGS="$flags" CXXFLAGS="$flags" \
HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_GPU_OPERATIONS= \
MAKEFLAGS="-j$(nproc)" HOROVOD_BUILD_ARCH_FLAGS="" \
    "$venv/bin/pip" install --no-build-isolation --no-cache-dir --no-binary horovod \
    "horovod==$horovod_version"
"$venv/bin/horovodrun" --check-build
echo "$want" > "$stamp"
