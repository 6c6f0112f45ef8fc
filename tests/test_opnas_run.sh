#!/bin/sh
# `etnas run` end to end with the opnas strategy on the synthetic test task:
# a tiny population of attention graphs and convolutions evolves for a few
# generations; the report lists the best graphs as formulas and the UCB
# statistics per op; the same seed gives the same search (graphs, scores,
# UCB figures) and another seed another one; runs killed with SIGKILL and
# resumed end with the same result as an uninterrupted run. Prints TAP.
set -u
: "${ET_BUILDDIR:=.}" "${ET_SRCDIR:=.}"
etnas="$ET_BUILDDIR/etnas"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/plugins"
ln -s "$ET_BUILDDIR/tests/plugins/.libs/synth.so" "$tmp/plugins/"
. "$ET_SRCDIR/tests/tap.sh"

ini() { # name seed generations steps
    cat <<INI
[experiment]
name = $1
seed = $2
threads = 1
plugin_path = $tmp/plugins
output = $tmp/$1
[task]
plugin = synth
[space]
encoder_embed_dim = 16
encoder_layers = 2
encoder_ffn_dim = 32
encoder_heads = 2
encoder_attention = opgraph
encoder_block = standard, conv
encoder_conv_kernel = 3, 5
head_dim = 8
pooling = cls
[search opnas]
population = 6
parents = 2
generations = $3
init_steps = 150
steps = $4
final_steps = 100
report_top = 2
[train]
steps = 150
batch_size = 32
eval_batch_size = 64
lr = 3e-3
warmup_steps = 10
dropout = 0
[final]
retrain = false
INI
}

# what a search decided: its graphs, scores and UCB figures (no timings)
result() { grep "opnas #\|opnas UCB\|opnas final\|opnas generation\|opnas rejected" "$1" |
    sed 's/^.*opnas/opnas/'; }

echo "1..7"
ini a 3 3 20 >"$tmp/a.ini"
"$etnas" run "$tmp/a.ini" >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
if [ $rc -eq 0 ] && grep -q "opnas #[0-9]* layer 0: " "$tmp/a.err" &&
    grep -q "opnas UCB softmax: " "$tmp/a.err" && grep -q "opnas final 1: .*test" "$tmp/a.err" &&
    [ "$(grep -c "opnas generation" "$tmp/a.err")" -eq 3 ] &&
    grep -q "^## UCB statistics per op" "$tmp"/a/opnas-*.md &&
    grep -q "opnas-[0-9a-f]*\.md" "$tmp/a/report.md"; then
    ok "three generations; graphs, UCB figures and a final test score in the log and the report"
else
    not_ok "opnas run" "exit $rc" "$(tail -n 12 "$tmp/a.err")"
fi

tries=$(grep "opnas UCB (" "$tmp/a.err" | sed 's/.*, \([0-9]*\) tries.*/\1/')
if [ "${tries:-0}" -ge 1 ] && [ "$tries" -le 12 ] &&
    grep -q "opnas #[0-9]*: rank 1, accuracy 0\.[0-9]*, loss [0-9.]*, graph MACs [0-9]" "$tmp/a.err"; then
    ok "UCB counted $tries tries (at most one per child) and the best member has a metric and MACs"
else
    not_ok "report figures" "tries ${tries:-none}" "$(result "$tmp/a.err" | head -n 8)"
fi

sed 's/^name = a/name = b/; s|output = .*/a$|output = '"$tmp"'/b|' "$tmp/a.ini" >"$tmp/b.ini"
"$etnas" run "$tmp/b.ini" >"$tmp/b.out" 2>"$tmp/b.err"
ini c 4 3 20 >"$tmp/c.ini"
"$etnas" run "$tmp/c.ini" >"$tmp/c.out" 2>"$tmp/c.err"
if [ -n "$(result "$tmp/a.err")" ] && [ "$(result "$tmp/a.err")" = "$(result "$tmp/b.err")" ] &&
    [ "$(result "$tmp/a.err")" != "$(result "$tmp/c.err")" ]; then
    ok "the same seed gives the same search, another seed another one"
else
    result "$tmp/b.err" >"$tmp/b.res"
    not_ok "reproducible by seed" "$(result "$tmp/a.err" | diff - "$tmp/b.res" | head -n 6)"
fi

# killed runs: long enough that the kills land in the search
ini full 5 10 40 >"$tmp/full.ini"
"$etnas" run "$tmp/full.ini" >"$tmp/full.out" 2>"$tmp/full.err"
sed 's/^name = full/name = k/; s|output = .*/full|output = '"$tmp"'/k|' "$tmp/full.ini" >"$tmp/k.ini"
killed=0
for delay in 0.3 0.4 0.5 0.6 0.7 0.8; do
    resume=
    [ $killed -eq 0 ] || resume=--resume
    "$etnas" run "$tmp/k.ini" $resume >/dev/null 2>&1 &
    pid=$!
    sleep $delay
    kill -9 $pid 2>/dev/null && killed=$((killed + 1))
    wait $pid 2>/dev/null
    has_run "$tmp/k/store.sqlite" || killed=0
done
"$etnas" run "$tmp/k.ini" --resume >"$tmp/k.out" 2>"$tmp/k.err"
rc=$?
if [ $rc -eq 0 ] && [ -n "$(result "$tmp/full.err")" ] &&
    [ "$(result "$tmp/full.err")" = "$(result "$tmp/k.err")" ]; then
    ok "killed $killed times and resumed: the same graphs, scores and UCB figures"
else
    result "$tmp/k.err" >"$tmp/k.res"
    not_ok "kill and resume" "exit $rc" "$(result "$tmp/full.err" | diff - "$tmp/k.res" | head -n 6)" \
        "$(tail -n 4 "$tmp/k.err")"
fi
[ $killed -ge 1 ] && ok "at least one kill landed before the run finished" ||
    not_ok "no kill landed (the run finished too fast)"

# side by side: OP-NAS and random search (standard attention, random blocks
# and kernels on the supernet) in one experiment and one report
{ ini s 3 1 20; printf '[search random]\nsamples = 4\n'; } >"$tmp/s.ini"
"$etnas" run "$tmp/s.ini" >"$tmp/s.out" 2>"$tmp/s.err"
rc=$?
if [ $rc -eq 0 ] && grep -q "^opnas,1," "$tmp/s/results.csv" && grep -q "^random,1," "$tmp/s/results.csv" &&
    grep -q "^| opnas | 1 |" "$tmp/s/report.md" && grep -q "^| random | 1 |" "$tmp/s/report.md"; then
    ok "opnas and random search side by side in one run and one report"
else
    not_ok "side by side" "exit $rc" "$(tail -n 4 "$tmp/s.err")" "$(cat "$tmp/s/results.csv" 2>/dev/null)"
fi
# a task without validation examples: a one-arch space passes the runner,
# but OP-NAS scores its graphs on the valid split, which train_custom refuses
# in one line before any training
ini nv 3 1 20 | sed '/^encoder_block/d; /^encoder_conv_kernel/d' >"$tmp/nv.ini"
"$etnas" run "$tmp/nv.ini" --set task.valid=0 >/dev/null 2>"$tmp/nv.err"
rc=$?
if [ $rc -eq 2 ] && [ "$(grep -c '^etnas run:' "$tmp/nv.err")" -eq 1 ] &&
    tail -n 1 "$tmp/nv.err" | grep -q "train_custom: the task has no validation examples" &&
    ! grep -q "opnas #" "$tmp/nv.err"; then
    ok "OP-NAS on a task without validation examples is refused in one line, exit 2, nothing trained"
else
    not_ok "opnas without valid" "exit $rc" "$(tail -n 3 "$tmp/nv.err")"
fi
[ $fails -eq 0 ]
