#!/bin/sh
# The image benchmark of the tasks issue: the fixed ViT of etc/fashion-vit.ini
# (E 64, 4 layers, 4 heads, FFN 128, GELU, pre-norm, patch 4, class token;
# AdamW lr 1e-3 wd 0.05, 10 % warm-up then cosine, batch 128, label
# smoothing 0.1, 5 epochs) on Debian's Fashion-MNIST, with softmax and with
# cosFormer in every layer. Prints test accuracy, the training rate and the
# wall time per epoch of training (updates / 5 / rate).
#   bench/fashion_vit.sh [BUILDDIR] [THREADS] [--set SECTION.KEY=VALUE ...]
# Run alone: never beside another benchmark on a 2-core machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/..}
threads=${2:-2}
shift $(($# < 2 ? $# : 2))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
steps=$(sed -n 's/^steps *= *//p' "$here/../etc/fashion-vit.ini")
echo "threads $threads, $steps updates = 5 epochs${*:+, $*}"
for op in softmax cosformer; do
    t0=$(date +%s)
    "$build/etnas" run "$here/../etc/fashion-vit.ini" --set experiment.threads="$threads" \
        --set experiment.output="$out/$op" --set space.encoder_attention=$op "$@" \
        >"$out/$op.out" 2>"$out/$op.err" || { tail -n 3 "$out/$op.err"; exit 1; }
    t1=$(date +%s)
    rate=$(sed -n 's/.*supernet: step [0-9]*\/[0-9]*, loss [0-9.]*, \([0-9.]*\) steps\/s.*/\1/p' \
        "$out/$op.err" | tail -n 1)
    test=$(sed -n 's/^fixed,1,[0-9]*,\([0-9.]*\),\([0-9.]*\),.*/valid \1, test \2/p' "$out/$op/results.csv")
    echo "$op: $test; $rate updates/s = $(echo "scale=1; $steps / 5 / $rate" | bc) s per epoch; run $((t1 - t0)) s"
done
