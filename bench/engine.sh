#!/bin/sh
# Engine benchmark: etnas's training step against this machine's sgemm (and
# against PyTorch when Debian's python3-torch is installed), same threads.
#   bench/engine.sh [BUILDDIR] [THREADS] [STEPS]
# Run alone: never beside another benchmark on a 2-core machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/..}
threads=${2:-2}
steps=${3:-20}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
ETNAS_PLUGIN_PATH="$build/plugins/attention/.libs" "$build/bench/engine" "$threads" "$steps" | tee "$out"
# etnas picks OpenBLAS kernels for CPUs OpenBLAS does not know (src/blas_tune.c);
# PyTorch runs as installed, and again with the same kernels when they differ
core=$(sed -n 's/^threads [0-9]*, OpenBLAS .* (\([A-Za-z0-9]*\)).*/\1/p' "$out" | head -n 1)
# Debian's python3-torch belongs to the system interpreter
for py in /usr/bin/python3 python3; do
    if "$py" -c 'import torch' 2>/dev/null; then
        echo "PyTorch as installed:"
        "$py" "$here/engine_torch.py" "$threads" "$steps"
        if [ -n "$core" ] && [ -z "${OPENBLAS_CORETYPE:-}" ]; then
            echo "PyTorch with OPENBLAS_CORETYPE=$core:"
            OPENBLAS_CORETYPE=$core "$py" "$here/engine_torch.py" "$threads" "$steps"
        fi
        exit 0
    fi
done
echo "PyTorch: not installed (apt-get install python3-torch to compare)"
