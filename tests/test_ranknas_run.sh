#!/bin/sh
# `etnas run` end to end with the ranknas strategy and the latency_mlp proxy
# on the test plugins (a synthetic task, a naive softmax operator, a fake
# cost proxy): every phase logs its result, the report shows the rankers'
# held-out tau, the predictor's held-out RMSE and tau and every final
# model's predicted latency beside the measured one, a --resume takes the early-stop
# state, the latency samples and the rankers from the store (the runner
# keeps every arch's costs, so latency_mlp is not asked again) and ends
# with the same candidates and results, runs killed with SIGKILL and
# resumed end like an uninterrupted run, and the shipped
# cifar10-mformer.ini and wmt14-mformer.ini run on tiny generated data.
# Prints TAP.
set -u
: "${ET_BUILDDIR:=.}" "${ET_SRCDIR:=.}"
etnas="$ET_BUILDDIR/etnas"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/plugins"
for p in synth ref_softmax fake_proxy; do ln -s "$ET_BUILDDIR/tests/plugins/.libs/$p.so" "$tmp/plugins/"; done
. "$ET_SRCDIR/tests/tap.sh"

write_ini() { # NAME STEPS CHUNK THRESHOLD PATIENCE
    cat >"$tmp/$1.ini" <<INI
[experiment]
name = ranknas-e2e
seed = 6
plugin_path = $tmp/plugins
output = $tmp/$1
[task]
plugin = synth
[space]
encoder_embed_dim = 16, 24
encoder_layers = 1..3
encoder_ffn_dim = 16, 32
encoder_heads = 2, 4
encoder_attention = ref_softmax
head_dim = 4
pooling = mean
[search ranknas]
rank_list = 12
chunk_steps = $3
max_steps = $2
tau_threshold = $4
patience = $5
samples = 60
latency_samples = 40
latency_warmup = 1
latency_runs = 5
latency_max_cv = 10
top_k = 8
population = 10
parents = 4
mutations = 4
crossovers = 4
iterations = 4
candidates = 2
[proxy fake_proxy]
[constraints]
params_m <= 20
[train]
steps = $2
batch_size = 32
eval_batch_size = 64
lr = 3e-3
warmup_steps = 10
checkpoint_every = 100
[final]
steps = 100
INI
}

# the search's own result: its candidates, without wall times
candidates() { grep "ranknas: candidate" "$1" | sed 's/^.*ranknas: //'; }

echo "1..13"
write_ini a 400 50 0.95 2
# latency_mlp as a constraint that every arch meets, and the latency it predicts measured
printf '[proxy latency_mlp]\nsamples = 30\nwarmup = 1\nruns = 5\nhidden = 32\nlr = 1e-3\nsteps = 200\n' >>"$tmp/a.ini"
printf '[proxy latency]\nwarmup = 1\nruns = 5\n' >>"$tmp/a.ini"
sed -i 's/^params_m <= 20$/&\nlatency_pred_ms <= 1000/' "$tmp/a.ini"
"$etnas" run "$tmp/a.ini" >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
if [ $rc -eq 0 ] && grep -q "^| ranknas | 1 | [0-9]* | 0\.[0-9]" "$tmp/a.out" &&
    [ "$(wc -l <"$tmp/a/results.csv")" -eq 2 ]; then
    ok "ranknas runs and its winner is retrained and reported"
else
    not_ok "run" "exit $rc" "$(tail -n 3 "$tmp/a.err")"
fi
cp "$tmp/a/results.csv" "$tmp/first.csv"
svg=$(ls "$tmp"/a/ranknas-*-importance.svg 2>/dev/null | head -n 1)
if [ -n "$svg" ] && grep -q "<rect" "$svg" && grep -q "](ranknas-[0-9a-f]*-importance\.svg)" "$tmp/a/report.md"; then
    ok "the report shows the feature-importance bars"
else
    not_ok "importance figure" "$(ls "$tmp/a")"
fi

if grep -q "ranknas: supernet step 100: Kendall tau -\{0,1\}[0-9.]* with the ranking of step 50 (12 archs)" "$tmp/a.err" &&
    grep -q "ranknas: supernet training stopped at step [0-9]* of at most 400" "$tmp/a.err" &&
    grep -q "ranknas: accuracy ranker: [0-9]* rounds on [0-9]* rows; Kendall tau -\{0,1\}[0-9.]* ± [0-9.]* (5-fold cross-validation), -\{0,1\}[0-9.]* on 6 held-out rows" "$tmp/a.err" &&
    grep -q "ranknas: latency ranker: [0-9]* rounds on [0-9]* rows; Kendall tau -\{0,1\}[0-9.]* ± [0-9.]* (5-fold cross-validation), -\{0,1\}[0-9.]* on 4 held-out rows" "$tmp/a.err" &&
    [ "$(grep -c "ranknas: most important by" "$tmp/a.err")" -eq 4 ] &&
    grep -q "ranknas: searching the genes of .*; the rest fixed as in enc(" "$tmp/a.err" &&
    [ "$(grep -c "ranknas: iteration [0-9]/4: best ranker score" "$tmp/a.err")" -eq 4 ] &&
    [ "$(candidates "$tmp/a.err" | wc -l)" -eq 2 ]; then
    ok "every phase logs: early stop, rankers' held-out tau, importance, pruning, search, candidates"
else
    not_ok "phase logs" "$(grep "ranknas:" "$tmp/a.err")"
fi

if grep -q "latency_mlp: predicted latency on 6 held-out samples: RMSE [0-9.e-]* ms, Kendall tau" "$tmp/a.err" &&
    grep -q '"latency_pred_ms": [0-9]' "$tmp/a/results.json"; then
    ok "latency_mlp reports held-out RMSE and tau and gives latency_pred_ms for every evaluation"
else
    not_ok "latency_mlp" "$(grep latency_mlp "$tmp/a.err")"
fi

# the rankers' page, set into the report: both rankers' cross-validated and
# test tau, at least min_rounds (50) rounds each, and the two candidates
rounds=$(sed -n 's/^| \(accuracy\|latency\) | rank:pairwise | [0-9]* | \([0-9]*\) | .*/\2/p' "$tmp/a/report.md")
if grep -q "](ranknas-[0-9a-f]*-rankers\.md)" "$tmp/a/report.md" &&
    grep -q "^### RankNAS rankers" "$tmp/a/report.md" &&
    grep -q "^| accuracy | rank:pairwise | [0-9]* | [0-9]* | -\{0,1\}[0-9.]* ± [0-9.]* (5-fold cross-validation) | 6 | -\{0,1\}[0-9.]* |$" "$tmp/a/report.md" &&
    grep -q "^| latency | rank:pairwise | [0-9]* | [0-9]* | -\{0,1\}[0-9.]* ± [0-9.]* (5-fold cross-validation) | 4 | -\{0,1\}[0-9.]* |$" "$tmp/a/report.md" &&
    [ "$(echo "$rounds" | wc -w)" -eq 2 ] && [ "$(echo "$rounds" | awk '$1 < 50' | wc -l)" -eq 0 ] &&
    [ "$(grep -c "^| [12] | -\{0,1\}[0-9.e-]* | [0-9.e-]* | 0\.[0-9]* | \`enc(" "$tmp/a/report.md")" -eq 2 ]; then
    ok "the report shows both rankers' held-out tau (rounds: $(echo $rounds)) and the candidates"
else
    not_ok "rankers in the report" "$(grep -A 12 "RankNAS rankers" "$tmp/a/report.md")"
fi

# predicted beside measured latency for every final model, and the
# predictor's held-out figures
if grep -q "^## Predicted against measured: latency_ms" "$tmp/a/report.md" &&
    grep -q "^| ranknas | 1 | [0-9.e-]* | [0-9.e-]* | [-+][0-9.e-]* | [-+][0-9.]* |$" "$tmp/a/report.md" &&
    grep -q "^Over 1 final model: RMSE [0-9.e-]*\.$" "$tmp/a/report.md" &&
    grep -q "^### latency_mlp: the latency predictor" "$tmp/a/report.md" &&
    grep -q "^| 6 | [0-9.e-]* | [0-9.e-]* | -\{0,1\}[0-9.]* |$" "$tmp/a/report.md" &&
    grep -q "^## Predicted against measured: latency_ms" "$tmp/a.out"; then
    ok "the report sets predicted latency beside measured and shows the predictor's held-out RMSE and tau"
else
    not_ok "predicted vs measured" "$(grep -A 8 "Predicted against\|latency predictor" "$tmp/a/report.md")"
fi

"$etnas" run "$tmp/a.ini" --resume >"$tmp/r.out" 2>"$tmp/r.err"
rc=$?
if [ $rc -eq 0 ] && grep -q "ranknas: early stop state from the store: [0-9]* chunks, supernet step [0-9]*, stopped" "$tmp/r.err" &&
    grep -q "ranknas: 40 of 40 latency samples from the store" "$tmp/r.err" &&
    grep -q "ranknas: latency ranker from the store" "$tmp/r.err" &&
    grep -q "ranknas: accuracy ranker from the store" "$tmp/r.err" &&
    ! grep -q "latency samples: [0-9]\|latency_mlp: predicted latency on" "$tmp/r.err"; then
    ok "--resume measures and trains nothing again: state, samples and rankers from the store"
else
    not_ok "--resume" "exit $rc" "$(grep "ranknas:\|latency" "$tmp/r.err")"
fi

if [ "$(candidates "$tmp/a.err")" = "$(candidates "$tmp/r.err")" ] && cmp -s "$tmp/first.csv" "$tmp/a/results.csv"; then
    ok "--resume ends with the same candidates and results"
else
    not_ok "--resume results" "$(candidates "$tmp/r.err")" "$(cat "$tmp/a/results.csv")"
fi

# killed runs: the supernet trains in chunks to max_steps (no early stop),
# long enough for the kills to land in training, data collection and search
write_ini full 3000 500 1 100
"$etnas" run "$tmp/full.ini" >/dev/null 2>"$tmp/full.err" || not_ok "uninterrupted long run"
write_ini k 3000 500 1 100
sed -i "s|^output = .*|output = $tmp/k|" "$tmp/k.ini"
killed=0
for delay in 0.3 0.6 0.9 1.3; do
    if [ $killed -eq 0 ]; then "$etnas" run "$tmp/k.ini" >/dev/null 2>&1 & else "$etnas" run "$tmp/k.ini" --resume >/dev/null 2>&1 & fi
    pid=$!
    sleep $delay
    kill -9 $pid 2>/dev/null && killed=$((killed + 1))
    wait $pid 2>/dev/null
    has_run "$tmp/k/store.sqlite" || killed=0
done
"$etnas" run "$tmp/k.ini" --resume >/dev/null 2>"$tmp/k.err"
rc=$?
if [ $rc -eq 0 ] && [ "$(candidates "$tmp/full.err")" = "$(candidates "$tmp/k.err")" ] &&
    cmp -s "$tmp/full/results.csv" "$tmp/k/results.csv"; then
    ok "killed $killed times and resumed: the same candidates and results as an uninterrupted run"
else
    not_ok "kill and resume" "exit $rc: $(tail -n 2 "$tmp/k.err")" "$(candidates "$tmp/full.err")" \
        "$(candidates "$tmp/k.err")" "$(cat "$tmp/full/results.csv")" "$(cat "$tmp/k/results.csv")"
fi
[ $killed -ge 1 ] && ok "at least one kill landed before the run finished" || not_ok "no kill landed (the run finished too fast)"

# the shipped experiments, shrunk by --set, on tiny generated data
run_shipped() { # INI OUT [--set ...]: the searches, proxies, training and final made tiny
    ini=$1 out=$2
    shift 2
    "$etnas" run "$ET_SRCDIR/etc/$ini" --set experiment.output="$tmp/$out" --set experiment.threads=1 \
        --set "search ranknas.rank_list=4" --set "search ranknas.chunk_steps=10" \
        --set "search ranknas.max_steps=30" --set "search ranknas.samples=12" \
        --set "search ranknas.latency_samples=8" --set "search ranknas.latency_warmup=0" \
        --set "search ranknas.latency_runs=2" --set "search ranknas.latency_max_cv=10" \
        --set "search ranknas.population=4" --set "search ranknas.parents=2" \
        --set "search ranknas.mutations=2" --set "search ranknas.crossovers=2" \
        --set "search ranknas.iterations=2" --set "search ranknas.candidates=1" \
        --set "search ranknas.top_k=3" --set "proxy latency.warmup=0" --set "proxy latency.runs=2" \
        --set "proxy latency_mlp.samples=8" --set "proxy latency_mlp.warmup=0" \
        --set "proxy latency_mlp.runs=2" --set "proxy latency_mlp.hidden=8" \
        --set "proxy latency_mlp.steps=20" --set train.steps=30 --set train.warmup_steps=5 \
        --set train.checkpoint_every=10 --set train.eval_batch_size=8 --set final.steps=5 \
        --set final.top=1 "$@" >"$tmp/$out.out" 2>"$tmp/$out.err"
}
mkdir "$tmp/cifar"
for b in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
    i=0
    while [ $i -lt 8 ]; do
        printf "\\$(printf %03o $((i % 10)))" >>"$tmp/cifar/$b.bin"
        head -c 3072 /dev/urandom >>"$tmp/cifar/$b.bin"
        i=$((i + 1))
    done
done
run_shipped cifar10-mformer.ini c --set task.data="$tmp/cifar" --set task.valid_size=8 \
    --set task.patch=8 --set space.encoder_embed_dim=16,32 --set space.encoder_layers=1..2 \
    --set space.encoder_ffn_dim=16,32 --set space.encoder_heads=1,2 --set space.head_dim=8 \
    --set train.batch_size=8
rc=$?
if [ $rc -eq 0 ] && grep -q "ranknas: candidate 1:" "$tmp/c.err" && grep -q "^ranknas,1," "$tmp/c/results.csv"; then
    ok "etc/cifar10-mformer.ini runs ranknas on tiny generated CIFAR-10 batches"
else
    not_ok "cifar10-mformer" "exit $rc" "$(tail -n 3 "$tmp/c.err")"
fi

mkdir "$tmp/wmt"
for split in train valid test; do
    lines=24
    [ $split = train ] || lines=6
    i=0
    while [ $i -lt $lines ]; do
        echo "the hou@@ se is small number $((i % 7))" >>"$tmp/wmt/$split.en"
        echo "das hau@@ s ist klein nummer $((i % 7))" >>"$tmp/wmt/$split.de"
        i=$((i + 1))
    done
done
run_wmt() { # OUT [--set ...]: wmt14-mformer.ini on the tiny pairs, its space made tiny
    out=$1
    shift
    run_shipped wmt14-mformer.ini "$out" --set task.data="$tmp/wmt" --set task.max_tokens=256 \
        --set space.encoder_embed_dim=16,24 --set space.encoder_layers=2 \
        --set space.encoder_ffn_dim=16,32 --set space.encoder_heads=2,4 \
        --set space.decoder_embed_dim=16,24 --set space.decoder_layers=1..2 \
        --set space.decoder_ffn_dim=16,32 --set space.decoder_heads=2,4 \
        --set space.decoder_cross_heads=2,4 --set space.decoder_connect=1,2 \
        --set space.qkv_dim=16 --set train.beam=1 "$@"
}
run_wmt w
rc=$?
if [ $rc -eq 0 ] && grep -q "ranknas: candidate 1:" "$tmp/w.err" && grep -q "^ranknas,1," "$tmp/w/results.csv" &&
    grep -q "test final: bleu [0-9.]*, loss [0-9.]*, [0-9.]* % of hypotheses with a token 4+ times in a row" "$tmp/w.err" &&
    grep -q "^ranknas all-softmax,1,.*dec(.*" "$tmp/w/results.csv" && grep -q "^ranknas all-cosformer,1,.*dec(.*" "$tmp/w/results.csv" &&
    ! grep "^ranknas all-cosformer," "$tmp/w/results.csv" | grep -q "[[,]attn=softmax" &&
    ! grep "^ranknas all-softmax," "$tmp/w/results.csv" | grep -q "[[,]attn=cosformer" &&
    grep -q "^| all-cosformer | [0-9.]* | [0-9.]* | [0-9.]* | [0-9.]* | cosformer cosformer | cosformer\( cosformer\)* |$" "$tmp/w/report.md" &&
    grep -q "^HAT's MLP (12 inputs," "$tmp/w/report.md"; then
    ok "etc/wmt14-mformer.ini runs ranknas on tiny generated parallel text (BLEU and repeater share of the finals logged; all-softmax and all-cosformer encoder and decoder baselines; the latency predictor reads HAT's ten features and both stacks' mean attention choice)"
else
    not_ok "wmt14-mformer" "exit $rc" "$(tail -n 3 "$tmp/w.err")"
fi

# a stack with one operator adds no mean-attention input: the decoder on
# softmax alone gives HAT's ten features and the encoder's mean (11 inputs)
run_wmt w1 --set space.decoder_attention=softmax --set final.compare_attention=false
rc=$?
if [ $rc -eq 0 ] && grep -q "^HAT's MLP (11 inputs," "$tmp/w1/report.md"; then
    ok "with one decoder operator the latency predictor reads HAT's ten features and the encoder's mean attention only"
else
    not_ok "one decoder operator" "exit $rc" "$(tail -n 3 "$tmp/w1.err")" "$(grep "HAT's MLP" "$tmp/w1/report.md")"
fi
[ $fails -eq 0 ]
