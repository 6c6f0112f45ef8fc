#!/bin/sh
# The image benchmark of the tasks issue: the fixed ViT of etc/fashion-vit.ini
# (E 64, 4 layers, 4 heads, FFN 128, GELU, pre-norm, patch 4, class token;
# AdamW lr 1e-3 wd 0.05, one-cycle schedule with 10 % warm-up, batch 128,
# label smoothing 0.1, 5 epochs; elsewhere as the ini says, the same as
# bench/fashion_vit_torch.py --ini) on Debian's Fashion-MNIST, with softmax and with
# cosFormer in every layer. Prints this machine's sgemm figure (bench/engine,
# same threads), then for each run test accuracy, the training rate, the wall
# time per epoch of training (updates / 5 / rate) and the model's FLOP rate
# (3 x the flops proxy's forward FLOPs x 128 examples per update x rate: the
# usual backward = 2 x forward estimate) against sgemm; then the mean and
# sample standard deviation of test accuracy over the seeds.
#   bench/fashion_vit.sh [BUILDDIR] [THREADS] [--all-train] [--seeds N]
#                        [--first-seed S] [--only OP] [--init-from PATTERN]
#                        [--set SECTION.KEY=VALUE ...]
# --all-train trains on all 60,000 training images (valid_size = 0, 2,344
# updates = 5 epochs), as a reference recipe without a validation split
# does; by default 5,000 are held out for validation (2,149 updates).
# cosFormer runs with train.init = normal and train.pos_init_std = 0.02, the
# initialisation chosen for it on the validation images (etc/fashion-vit.ini
# says why); a --set train.init=... or train.pos_init_std=... given here
# overrides it.
# --seeds N runs N seeds of each operator (default 1) from S (--first-seed,
# default 1); --only OP runs one operator instead of softmax and cosformer.
# --init-from PATTERN starts each seed's run from the parameters of an etnas
# checkpoint ([train] init_from), PATTERN with %s replaced by the seed: e.g.
# other generators' initial draws written by fashion_vit_torch.py --to-etnas.
# Run alone: never beside another benchmark on a 2-core machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
# the positional arguments end at the first --option
build=$here/..
threads=2
case ${1:-} in --*|'') ;; *) build=$1; shift ;; esac
case ${1:-} in --*|'') ;; *) threads=$1; shift ;; esac
steps=$(sed -n 's/^steps *= *//p' "$here/../etc/fashion-vit.ini")
seeds=1
first=1
ops="softmax cosformer"
extra=""
init_from=""
while [ $# -gt 0 ]; do
    case $1 in
    --all-train) steps=2344; extra="--set task.valid_size=0 --set train.steps=2344 --set train.warmup_steps=234" ;;
    --seeds)
        seeds=${2:-}
        case $seeds in '' | *[!0-9]* | 0) echo "fashion_vit.sh: --seeds takes a count >= 1" >&2; exit 2 ;; esac
        shift ;;
    --first-seed)
        first=${2:-}
        case $first in '' | *[!0-9]*) echo "fashion_vit.sh: --first-seed takes a seed >= 0" >&2; exit 2 ;; esac
        shift ;;
    --only) ops=${2:-}; [ -n "$ops" ] || { echo "fashion_vit.sh: --only takes an operator" >&2; exit 2; }; shift ;;
    --init-from)
        init_from=${2:-}
        case $init_from in *%s*) ;; *) echo "fashion_vit.sh: --init-from takes a path with %s for the seed" >&2; exit 2 ;; esac
        shift ;;
    --set) break ;;
    *) echo "fashion_vit.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
last=$((first + seeds - 1))
echo "threads $threads, $steps updates = 5 epochs, seeds $first..$last${extra:+, all 60,000 training images}${init_from:+, init_from $init_from}${*:+, $*}"
sgemm=$("$build/bench/engine" "$threads" sgemm 2>/dev/null |
    sed -n 's/^sgemm 1024^3: \([0-9.]*\) GFLOP\/s$/\1/p') || :
[ -n "$sgemm" ] || { echo "fashion_vit.sh: no sgemm figure from $build/bench/engine (make it first)" >&2; exit 1; }
echo "this machine's sgemm 1024^3, $threads threads: $sgemm GFLOP/s"
for op in $ops; do
    : >"$out/$op.acc"
    own=""
    if [ "$op" = cosformer ]; then
        own="--set train.init=normal --set train.pos_init_std=0.02"
        echo "$op: $own (chosen on validation) before the --set options given"
    fi
    for seed in $(seq "$first" "$last"); do
        from=""
        [ -z "$init_from" ] || from=train.init_from=$(printf '%s\n' "$init_from" | sed "s/%s/$seed/g")
        t0=$(date +%s)
        # shellcheck disable=SC2086 # extra and own hold whole --set words
        "$build/etnas" run "$here/../etc/fashion-vit.ini" --set experiment.threads="$threads" \
            --set experiment.output="$out/$op$seed" --set experiment.seed="$seed" \
            --set space.encoder_attention=$op $extra $own ${from:+--set} ${from:+"$from"} "$@" \
            >"$out/$op.out" 2>"$out/$op.err" || { tail -n 3 "$out/$op.err"; exit 1; }
        t1=$(date +%s)
        rate=$(sed -n 's/.*supernet: step [0-9]*\/[0-9]*, loss [0-9.]*, \([0-9.]*\) steps\/s.*/\1/p' \
            "$out/$op.err" | tail -n 1)
        valid=$(sed -n 's/^fixed,1,[0-9]*,\([0-9.]*\),.*/\1/p' "$out/$op$seed/results.csv")
        test=$(sed -n 's/^fixed,1,[0-9]*,[0-9.]*,\([0-9.]*\),.*/\1/p' "$out/$op$seed/results.csv")
        flops=$(sed -n 's/^fixed,1,[0-9]*,[0-9.]*,[0-9.]*,[0-9.]*,\([0-9.e-]*\),.*/\1/p' \
            "$out/$op$seed/results.csv")
        model=$(awk -v f="$flops" -v r="$rate" 'BEGIN {printf "%.1f", 3 * f * 128 * r}')
        echo "$test" >>"$out/$op.acc"
        echo "$op seed $seed: valid ${valid:--}, test $test; $rate updates/s =" \
            "$(echo "scale=1; $steps / 5 / $rate" | bc) s per epoch;" \
            "model $model GFLOP/s = $(awk -v m="$model" -v s="$sgemm" 'BEGIN {printf "%.0f", 100 * m / s}') % of sgemm;" \
            "run $((t1 - t0)) s"
    done
    awk -v op="$op" '{s += $1; q += $1 * $1; n++}
        END {m = s / n; var = n > 1 ? (q - n * m * m) / (n - 1) : 0;
             sd = var > 0 ? sqrt(var) : 0;
             printf "%s: test accuracy mean %.2f %% (sd %.2f over %d seeds)\n", op, 100 * m, 100 * sd, n}' \
        "$out/$op.acc"
done
