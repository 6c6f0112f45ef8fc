#!/bin/sh
# The translation benchmark of the tasks issue: one fixed Transformer
# (E 256, 3 + 3 layers, 4 heads, FFN 1024, pre-norm) trained on the
# German->English pairs of data/deen (./bootstrap prepares them, joint BPE
# with 4000 merges; init = xavier as fairseq, which in 400 updates reached
# loss 5.16 against 5.69 with the default N(0, 0.02^2)) with each of these
# attention set-ups:
#   softmax               softmax everywhere
#   cosformer-encoder     cosFormer in the encoder
#   cosformer-everywhere  cosFormer in the encoder and decoder self-attention
#   cosformer-decoder     cosFormer in decoder self-attention only
#   performer-decoder     Performer in decoder self-attention only
#   linear-decoder        linear (elu+1) in decoder self-attention only
# (decoder self-attention of the kernel operators with fixed max_positions /
# causal state; cross-attention stays softmax). Prints test BLEU (greedy
# decoding), the share of test hypotheses with one token 4+ times in a row
# ("repeater" output), the last training loss, the training rate and the
# wall time of each.
#   bench/deen.sh [BUILDDIR] [STEPS] [THREADS] [SETUP ...]
# Without SETUPs it runs the first three. Run alone: never beside another
# benchmark on a 2-core machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/..}
steps=${2:-2000}
threads=${3:-2}
shift $(($# < 3 ? $# : 3))
data=$here/../data/deen
[ -f "$data/train.de" ] || { echo "no $data: run ./bootstrap (it prepares data/deen)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # name enc_attention dec_attention
    cat >"$out/$1.ini" <<INI
[experiment]
name = $1
seed = 1
threads = $threads
output = $out/$1
[task]
plugin = translate
data = $data
merges = 4000
max_len = 32
max_tokens = 4096
[space]
encoder_embed_dim = 256
encoder_layers = 3
encoder_ffn_dim = 1024
encoder_heads = 4
encoder_attention = $2
decoder_embed_dim = 256
decoder_layers = 3
decoder_ffn_dim = 1024
decoder_heads = 4
decoder_attention = $3
decoder_cross_heads = 4
head_dim = 64
norm = pre
[search fixed]
plugin = random
samples = 1
[proxy params]
[proxy flops]
[train]
init = xavier
steps = $steps
batch_size = 128
eval_batch_size = 256
lr = 1e-3
warmup_steps = $((steps / 10))
schedule = cosine
weight_decay = 0.0001
dropout = 0.1
label_smoothing = 0.1
checkpoint_every = $((steps / 5))
beam = 1
[final]
retrain = false
INI
    t0=$(date +%s)
    "$build/etnas" run "$out/$1.ini" >"$out/$1.out" 2>"$out/$1.err" ||
        { echo "$1: failed: $(tail -n 1 "$out/$1.err")"; return 0; }
    t1=$(date +%s)
    row=$(grep "^| random\|^| fixed" "$out/$1.out" | head -n 1)
    loss=$(sed -n 's/.*supernet: step [0-9]*\/[0-9]*, loss \([0-9.]*\).*/\1/p' "$out/$1.err" | tail -n 1)
    rate=$(sed -n 's/.*supernet: step [0-9]*\/[0-9]*, loss [0-9.]*, \([0-9.]*\) steps\/s.*/\1/p' \
        "$out/$1.err" | tail -n 1)
    test=$(sed -n 's/.* test final: \(bleu [0-9.]*\), loss [0-9.]*, \([0-9.]* %\) of hyp.*/test \1, repeaters \2/p' "$out/$1.err" | tail -n 1)
    echo "$1: $test; $row train-loss $loss, $rate updates/s, wall $((t1 - t0)) s"
}
echo "steps $steps, threads $threads"
[ $# -gt 0 ] || set -- softmax cosformer-encoder cosformer-everywhere
for setup in "$@"; do
    case $setup in
    softmax) run softmax softmax softmax ;;
    cosformer-encoder) run "$setup" cosformer softmax ;;
    cosformer-everywhere) run "$setup" cosformer "cosformer(max_positions=40)" ;;
    cosformer-decoder) run "$setup" softmax "cosformer(max_positions=40)" ;;
    performer-decoder) run "$setup" softmax performer ;;
    linear-decoder) run "$setup" softmax linear ;;
    *) echo "unknown set-up $setup" >&2; exit 2 ;;
    esac
done
