#!/bin/sh
# `etnas run` end to end with the par strategy on the test plugins (the
# synthetic task read through a class token, so only attention can carry
# information to it): the found arch keeps an attention block and scores
# well with the soft supernet's weights; a large expected-cost coefficient on
# the params proxy drives every layer to identity; and runs killed with
# SIGKILL, resumed, end with the same logits and results. The zerocost
# proxy's figures are recorded with every evaluation. Prints TAP.
set -u
: "${ET_BUILDDIR:=.}" "${ET_SRCDIR:=.}"
etnas="$ET_BUILDDIR/etnas"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/plugins"
for p in synth ref_softmax; do ln -s "$ET_BUILDDIR/tests/plugins/.libs/$p.so" "$tmp/plugins/"; done
. "$ET_SRCDIR/tests/tap.sh"

ini() { # name steps cost_coef
    cat <<INI
[experiment]
name = $1
seed = 3
plugin_path = $tmp/plugins
output = $tmp/$1
[task]
plugin = synth
[space]
encoder_embed_dim = 16
encoder_layers = 4
encoder_ffn_dim = 32
encoder_heads = 2
encoder_attention = ref_softmax
encoder_block = attention-only, ffn-only, identity
head_dim = 8
pooling = cls
[search par]
steps = $2
checkpoint_every = 50
cost = params_m
cost_coef = $3
[proxy params]
[proxy zerocost]
batch = 16
[train]
steps = 300
batch_size = 32
eval_batch_size = 64
lr = 3e-3
warmup_steps = 10
dropout = 0
[final]
retrain = false
INI
}

echo "1..7"
ini plain 300 0 >"$tmp/plain.ini"
"$etnas" run "$tmp/plain.ini" >"$tmp/plain.out" 2>"$tmp/plain.err"
rc=$?
acc=$(sed -n 's/^| par | 1 | [0-9]* | \(0\.[0-9]*\) |.*/\1/p' "$tmp/plain.out")
if [ $rc -eq 0 ] && grep -q "^par #1: .*block=attention-only" "$tmp/plain.out" &&
    awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.6) }'; then
    ok "a task that needs attention keeps an attention block (valid accuracy $acc)"
else
    not_ok "attention survives" "exit $rc, accuracy ${acc:-none}" "$(tail -n 12 "$tmp/plain.err")"
fi

if grep -q '"zc_grad_norm": [0-9]' "$tmp/plain/results.json" &&
    grep -q '"zc_synflow": -*[0-9]' "$tmp/plain/results.json" &&
    grep -q '"zc_jacob_cov": -*[0-9]' "$tmp/plain/results.json" &&
    grep -q '"lts_params_m": 0\.' "$tmp/plain/results.json"; then
    ok "the zerocost proxy's figures reach results.json"
else
    not_ok "zero-cost figures" "$(head -c 600 "$tmp/plain/results.json")"
fi

svg=$(ls "$tmp"/plain/par-*.svg 2>/dev/null | head -n 1)
if [ -n "$svg" ] && grep -q "<polyline" "$svg" && grep -q "](par-[0-9a-f]*\.svg)" "$tmp/plain/report.md" &&
    grep -q "attention blocks of 4 layers" "$tmp"/plain/par-*.md &&
    grep -q "^| all-interleaved baseline | 0\.[0-9]* | [0-9.]* | - | [0-9.]* |" "$tmp"/plain/par-*.md; then
    ok "the report shows PAR's block probabilities, where attention ended up, and the all-interleaved baseline"
else
    not_ok "PAR figures" "$(ls "$tmp/plain")" "$(tail -n 5 "$tmp/plain/report.md")"
fi

ini costly 300 100000 >"$tmp/costly.ini"
"$etnas" run "$tmp/costly.ini" >"$tmp/costly.out" 2>"$tmp/costly.err"
rc=$?
if [ $rc -eq 0 ] && grep "^par #1: " "$tmp/costly.out" | grep -q "block=identity" &&
    ! grep "^par #1: " "$tmp/costly.out" | grep -q "block=attention-only\|block=ffn-only"; then
    ok "a large cost coefficient sends every layer to its cheapest choice (identity)"
else
    not_ok "cost term" "exit $rc" "$(grep "^par #1" "$tmp/costly.out")" "$(tail -n 6 "$tmp/costly.err")"
fi

# killed runs: long enough that the kills land in the search
ini full 3000 0 >"$tmp/full.ini"
"$etnas" run "$tmp/full.ini" >"$tmp/full.out" 2>"$tmp/full.err"
sed 's/^name = full/name = k/; s|output = .*/full|output = '"$tmp"'/k|' "$tmp/full.ini" >"$tmp/k.ini"
killed=0
rc=1
for delay in 1 1 1 2 2 3; do
    if [ $killed -eq 0 ]; then "$etnas" run "$tmp/k.ini" >/dev/null 2>&1 & else "$etnas" run "$tmp/k.ini" --resume >/dev/null 2>&1 & fi
    pid=$!
    sleep $delay
    kill -9 $pid 2>/dev/null && killed=$((killed + 1))
    wait $pid 2>/dev/null
    has_run "$tmp/k/store.sqlite" || killed=0
done
"$etnas" run "$tmp/k.ini" --resume >"$tmp/k.out" 2>"$tmp/k.err"
rc=$?
final() { grep "par final\|^par #1\|^| par" "$1" | sed 's/(.*s)//'; }
if [ $rc -eq 0 ] && [ -n "$(final "$tmp/full.err")" ] &&
    [ "$(grep "^par #1\|^| par" "$tmp/full.out")" = "$(grep "^par #1\|^| par" "$tmp/k.out")" ] &&
    [ "$(grep "par final" "$tmp/full.err")" = "$(grep "par final" "$tmp/k.err")" ]; then
    ok "killed $killed times and resumed: the same logits and results as an uninterrupted run"
else
    not_ok "kill and resume" "exit $rc" "$(grep "par final" "$tmp/full.err" | head -2)" \
        "$(grep "par final" "$tmp/k.err" | head -2)" "$(grep "^| par" "$tmp/full.out" "$tmp/k.out")"
fi
[ $killed -ge 1 ] && ok "at least one kill landed before the run finished" ||
    not_ok "no kill landed (the run finished too fast)"
# train.init_from reaches the soft supernet too: a run from the first run's
# soft supernet checkpoint loads it into both models
"$etnas" run "$tmp/plain.ini" --set experiment.output="$tmp/warm" \
    --set train.init_from="$tmp/plain/search_par.ckpt" >"$tmp/warm.out" 2>"$tmp/warm.err"
rc=$?
if [ $rc -eq 0 ] && grep -q "^etnas: info: \[search par\] soft supernet: parameters from $tmp/plain/search_par.ckpt$" "$tmp/warm.err" &&
    grep -q "^etnas: info: supernet: parameters from $tmp/plain/search_par.ckpt$" "$tmp/warm.err"; then
    ok "init_from starts par's soft supernet from the checkpoint as well"
else
    not_ok "par init_from" "exit $rc" "$(tail -n 3 "$tmp/warm.err")"
fi

[ $fails -eq 0 ]
