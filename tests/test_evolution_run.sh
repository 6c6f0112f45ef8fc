#!/bin/sh
# `etnas run` end to end with the evolution strategy beside random on the
# test plugins (a synthetic task, a naive softmax operator, a fake cost
# proxy): every strategy asks for the evaluations its options imply and gets
# a row in the report, and a --resume replays the searches, takes every
# evaluation from the store and ends with the same results. Prints TAP.
set -u
: "${ET_BUILDDIR:=.}" "${ET_SRCDIR:=.}"
etnas="$ET_BUILDDIR/etnas"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/plugins"
for p in synth ref_softmax fake_proxy; do ln -s "$ET_BUILDDIR/tests/plugins/.libs/$p.so" "$tmp/plugins/"; done
. "$ET_SRCDIR/tests/tap.sh"

# fake_proxy's params_m is the embedding dim, so the constraint keeps the 20
# archs of embed 16. Evolution evaluates 8 + (3 - 1) x (4 + 4) = 24
# architectures; by-loss 6 + (2 - 1) x (2 + 3) = 11.
cat >"$tmp/a.ini" <<INI
[experiment]
name = evolution-e2e
seed = 6
plugin_path = $tmp/plugins
output = $tmp/a
[task]
plugin = synth
[space]
encoder_embed_dim = 16, 24
encoder_layers = 1..2
encoder_ffn_dim = 16, 32
encoder_heads = 2, 4
encoder_attention = ref_softmax
head_dim = 4
pooling = mean
[search evolution]
population = 8
parents = 4
mutations = 4
crossovers = 4
iterations = 3
[search random]
samples = 8
[search by-loss]
plugin = evolution
fitness = loss
population = 6
parents = 3
mutations = 2
crossovers = 3
iterations = 2
[proxy fake_proxy]
[constraints]
params_m <= 20
[train]
steps = 200
batch_size = 32
eval_batch_size = 64
lr = 3e-3
warmup_steps = 10
checkpoint_every = 100
[final]
steps = 100
INI

echo "1..6"
"$etnas" run "$tmp/a.ini" >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
if [ $rc -eq 0 ] && [ -s "$tmp/a/report.md" ] && [ "$(wc -l <"$tmp/a/results.csv")" -eq 4 ]; then
    ok "run writes report.md and results.csv"
else
    not_ok "run" "exit $rc" "$(tail -n 3 "$tmp/a.err")"
fi
cp "$tmp/a/results.csv" "$tmp/first.csv"

# a child may repeat an arch that an earlier generation dropped: the store
# answers for it, so only the total is fixed on the first run
if grep -q "\[search evolution\] 24 evaluations (" "$tmp/a.err" &&
    grep -q "\[search random\] 8 evaluations (0 from the store)" "$tmp/a.err" &&
    grep -q "\[search by-loss\] 11 evaluations (" "$tmp/a.err" &&
    grep -q "^| evolution | 1 | [0-9]* | 0\.[0-9]" "$tmp/a.out" &&
    grep -q "^| random | 1 | 8 | 0\.[0-9]" "$tmp/a.out" &&
    grep -q "^| by-loss | 1 | [0-9]* | 0\.[0-9]" "$tmp/a.out"; then
    ok "each strategy asks for its evaluations and has a winner in the report"
else
    not_ok "evaluations and report rows" "$(grep "evaluations (" "$tmp/a.err")" "$(cat "$tmp/a.out")"
fi

if [ "$(grep -c "evolution: iteration [0-9]/3: best accuracy" "$tmp/a.err")" -eq 3 ] &&
    [ "$(grep -c "evolution: iteration [0-9]/2: best loss" "$tmp/a.err")" -eq 2 ] &&
    ! grep -q "warning" "$tmp/a.err"; then
    ok "evolution logs its best per iteration, by the metric or by the loss, with no warning"
else
    not_ok "iteration log" "$(grep "evolution" "$tmp/a.err")"
fi

"$etnas" run "$tmp/a.ini" --resume >"$tmp/r.out" 2>"$tmp/r.err"
rc=$?
[ $rc -eq 0 ] && ok "--resume runs" || not_ok "--resume" "exit $rc" "$(tail -n 3 "$tmp/r.err")"

if grep -q "\[search evolution\] 24 evaluations (24 from the store)" "$tmp/r.err" &&
    grep -q "\[search random\] 8 evaluations (8 from the store)" "$tmp/r.err" &&
    grep -q "\[search by-loss\] 11 evaluations (11 from the store)" "$tmp/r.err"; then
    ok "--resume replays the searches and takes every evaluation from the store"
else
    not_ok "--resume reuse" "$(grep "evaluations (" "$tmp/r.err")"
fi

if cmp -s "$tmp/first.csv" "$tmp/a/results.csv"; then
    ok "--resume ends with the same winners and scores"
else
    not_ok "--resume results" "$(cat "$tmp/first.csv")" "$(cat "$tmp/a/results.csv")"
fi

[ $fails -eq 0 ]
