#!/bin/sh
# etnas against PyTorch on the Fashion-ViT benchmark's model and recipe,
# update by update: the same initial weights, the same data and the same
# recipe must give the same gradient, losses and weights. Runs etnas twice on
# one full batch of the first IMAGES training images (default 1,000; the
# benchmark's batches hold 128) so the order of the data plays no part, with
# THREADS threads (default 1; the benchmark runs 2):
#   init   one update at lr 1e-30 without clipping (its checkpoint holds the
#          initial weights and, in AdamW's first moment, the gradient)
#   steps  40 updates of etc/fashion-vit.ini's recipe (one-cycle with 4
#          warm-up updates, clipping, AdamW), a checkpoint and a loss each
# then bench/fashion_vit_torch.py --ini --parity loads the initial weights into
# its PyTorch model, compares the gradient, repeats the 40 updates and
# compares every loss and the final weights, with the tolerances it prints.
# Exit status 0 when all agree. Needs Debian's python3-torch.
#   bench/fashion_vit_parity.sh [BUILDDIR] [THREADS] [IMAGES]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/..}
threads=${2:-1}
images=${3:-1000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() {
    name=$1
    shift
    "$build/etnas" run "$here/../etc/fashion-vit.ini" --set experiment.threads="$threads" \
        --set experiment.output="$out/$name" --set task.valid_size=0 --set task.max_train="$images" \
        --set train.batch_size="$images" --set train.checkpoint_every=1 "$@" \
        >/dev/null 2>"$out/$name.log" || { tail -n 3 "$out/$name.log"; exit 1; }
}
run init --set train.steps=1 --set train.warmup_steps=0 --set train.lr=1e-30 \
    --set train.clip_norm=0 --set train.schedule=cosine --set train.adam_beta1=0.9
run steps --set train.steps=40 --set train.warmup_steps=4
/usr/bin/python3 "$here/fashion_vit_torch.py" --ini --threads 1 --parity "$out" --parity-images "$images"
