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
ETNAS_PLUGIN_PATH="$build/plugins/attention/.libs" "$build/bench/engine" "$threads" "$steps"
if python3 -c 'import torch' 2>/dev/null; then
    python3 "$here/engine_torch.py" "$threads" "$steps"
else
    echo "PyTorch: not installed (apt-get install python3-torch to compare)"
fi
