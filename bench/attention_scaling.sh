#!/bin/sh
# Attention scaling: forward + backward time and peak memory of every
# attention operator for lengths 256..16384, bidirectional and causal, as CSV,
# a summary (ratios, crossover lengths) and a log-log SVG plot.
#   bench/attention_scaling.sh [BUILDDIR] [OUTDIR] [THREADS] [OPERATOR...]
# Operators default to softmax, linear, cosformer and performer; crossover
# lengths need softmax among them.
# Run alone: never beside another benchmark on a 2-core machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/..}
out=${2:-attention-scaling}
threads=${3:-2}
[ $# -gt 3 ] && shift 3 || set --
mkdir -p "$out"
ETNAS_PLUGIN_PATH="$build/plugins/attention/.libs" "$build/bench/attention_scaling" "$threads" 16384 60 \
    "$@" >"$out/results.csv"
python3 "$here/plot_scaling.py" "$out/results.csv" "$out/plot.svg" | tee "$out/summary.csv"
