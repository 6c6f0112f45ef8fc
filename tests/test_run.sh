#!/bin/sh
# `etnas run` end to end on the test plugins (a synthetic task, a naive
# softmax operator, a fake cost proxy): two strategies side by side, a
# report, a resume that reuses every stored evaluation, and runs killed
# with SIGKILL at several moments that, resumed, end exactly where an
# uninterrupted run ends. Prints TAP.
set -u
: "${ET_BUILDDIR:=.}" "${ET_SRCDIR:=.}"
etnas="$ET_BUILDDIR/etnas"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/plugins"
for p in synth ref_softmax fake_proxy; do ln -s "$ET_BUILDDIR/tests/plugins/.libs/$p.so" "$tmp/plugins/"; done
. "$ET_SRCDIR/tests/tap.sh"

write_ini() { # DIR STEPS
    cat >"$1.ini" <<INI
[experiment]
name = e2e
seed = 4
plugin_path = $tmp/plugins
output = $1
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
[search random]
samples = 8
[search second]
plugin = random
samples = 4
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
steps = 200
INI
}

# results.csv holds no wall times: interrupted or not, it must be the same
results() { cat "$1/results.csv"; }

echo "1..16"
write_ini "$tmp/a" 300
"$etnas" run "$tmp/a.ini" >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
if [ $rc -eq 0 ] && [ -s "$tmp/a/report.md" ] && [ "$(wc -l <"$tmp/a/results.csv")" -eq 3 ]; then
    ok "run writes report.md and results.csv"
else
    not_ok "run" "exit $rc" "$(tail -n 3 "$tmp/a.err")"
fi
acc=$(awk -F, 'NR > 1 && $5 > 0.6 {k++} END {print k + 0}' "$tmp/a/results.csv")
[ "$acc" -eq 2 ] && ok "both strategies' winners learn the task (test accuracy > 0.6)" || not_ok "accuracy" "$(cat "$tmp/a/results.csv")"

"$etnas" run "$tmp/a.ini" --resume >"$tmp/r.out" 2>"$tmp/r.err"
if grep -q "\[search random\] 8 evaluations (8 from the store)" "$tmp/r.err" &&
    grep -q "\[search second\] 4 evaluations (4 from the store)" "$tmp/r.err"; then
    ok "--resume reuses every stored evaluation"
else
    not_ok "--resume reuse" "$(cat "$tmp/r.err")"
fi

mkdir "$tmp/again"
"$etnas" report "$tmp/a/store.sqlite" --out "$tmp/again" >"$tmp/again.out" 2>&1
if cmp -s "$tmp/a/results.csv" "$tmp/again/results.csv" && cmp -s "$tmp/a/report.md" "$tmp/again/report.md" &&
    [ -s "$tmp/again/results.json" ] && [ -s "$tmp/again/pareto_params_m.svg" ]; then
    ok "etnas report rewrites the same report from the store alone"
else
    not_ok "etnas report" "$(cat "$tmp/again.out")"
fi

"$etnas" run "$tmp/a.ini" --resume --set experiment.seed=5 >/dev/null 2>"$tmp/m.err"
rc=$?
if [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/m.err")" -eq 1 ] && grep -q "cannot resume" "$tmp/m.err"; then
    ok "--resume with another seed is refused in one line, exit 2"
else
    not_ok "--resume mismatch" "exit $rc" "$(cat "$tmp/m.err")"
fi

write_ini "$tmp/top" 300
"$etnas" run "$tmp/top.ini" --set final.top=2 >"$tmp/top.out" 2>&1
if grep -q "^random,2," "$tmp/top/results.csv" && grep -q "^second,2," "$tmp/top/results.csv" &&
    [ "$(wc -l <"$tmp/top/results.csv")" -eq 5 ]; then
    ok "[final] top = 2 retrains and reports two winners per strategy"
else
    not_ok "top 2" "$(cat "$tmp/top/results.csv")"
fi

# measured latency and computed memory as cost figures
write_ini "$tmp/cost" 100
for p in latency memory; do ln -sf "$ET_BUILDDIR/plugins/proxies/.libs/$p.so" "$tmp/plugins/"; done
printf '[proxy latency]\nruns = 5\nwarmup = 1\n[proxy memory]\n' >>"$tmp/cost.ini"
"$etnas" run "$tmp/cost.ini" >"$tmp/cost.out" 2>&1
if grep -q '"latency_ms": [0-9]' "$tmp/cost/results.json" && grep -q '"memory_mb": [0-9]' "$tmp/cost/results.json" &&
    [ -s "$tmp/cost/pareto_latency_ms.svg" ]; then
    ok "latency and memory proxies give figures for every evaluation"
else
    not_ok "latency/memory" "$(tail -n 3 "$tmp/cost.out")"
fi

# the winner against the same arch on one attention operator throughout
write_ini "$tmp/cmp" 100
ln -sf "$ET_BUILDDIR/tests/plugins/.libs/fake_attn.so" "$tmp/plugins/"
sed -i 's/^encoder_attention = ref_softmax$/encoder_attention = ref_softmax, fake_attn/' "$tmp/cmp.ini"
"$etnas" run "$tmp/cmp.ini" --set final.compare_attention=true >"$tmp/cmp.out" 2>&1
rows=$(grep -c '^random all-\|^second all-' "$tmp/cmp/results.csv")
if [ "$rows" -ge 2 ] && grep -q "^## The found model against one operator throughout" "$tmp/cmp/report.md" &&
    grep -q "^| found | 0\.[0-9]* | [0-9.]* | [0-9.]* | [0-9.]* | [a-z_ ]* | - |$" "$tmp/cmp/report.md" &&
    grep -q "^| all-fake_attn | 0\.[0-9]* | [0-9.]* | [0-9.]* | [0-9.]* | fake_attn\( fake_attn\)* | - |$" "$tmp/cmp/report.md"; then
    ok "compare_attention adds the uniform-operator baselines of each winner, set beside it in the report"
else
    not_ok "compare_attention" "$(cat "$tmp/cmp/results.csv")" "$(cat "$tmp/cmp/report.md")"
fi
"$etnas" run "$tmp/cmp.ini" --set final.rank_check=3 --set experiment.output="$tmp/rank" >"$tmp/rank.out" 2>&1
if grep -q "^- random: -\{0,1\}[0-9.]* over 3 archs" "$tmp/rank/report.md"; then
    ok "rank_check reports Kendall tau of search scores against standalone training"
else
    not_ok "rank_check" "$(tail -n 5 "$tmp/rank.out")" "$(cat "$tmp/rank/report.md")"
fi
# layers without attention (ffn-only) keep the winner's attention gene in the
# baselines and show "-" in the report; seed 5 gives a winner with one
# standard and one ffn-only layer (the test says so if it no longer does)
sed 's/^encoder_layers = 1..2$/encoder_layers = 2\nencoder_block = standard, ffn-only/' "$tmp/cmp.ini" >"$tmp/blk.ini"
"$etnas" run "$tmp/blk.ini" --set experiment.output="$tmp/blk" --set experiment.seed=5 \
    --set train.steps=30 --set final.steps=20 --set final.compare_attention=true >"$tmp/blk.out" 2>&1
# every "S all-OP" row against S's winner, layer by layer: "bad" for an
# attention gene that should not have changed or should have, "mixed" when a
# baseline has both kinds of layer
verdict=$(awk -F'"' 'NR > 1 {
        split($1, f, ","); n = split($2, lay, "]"); name = f[1]
        if (name !~ / all-/) { for (i = 1; i < n; i++) found[name, i] = lay[i]; next }
        s = name; sub(/ all-.*/, "", s); op = name; sub(/.* all-/, "", op)
        std = 0; ffn = 0
        for (i = 1; i < n; i++) {
            a = lay[i]; sub(/.*attn=/, "", a); sub(/,.*/, "", a)
            w = found[s, i]; sub(/.*attn=/, "", w); sub(/,.*/, "", w)
            if (lay[i] ~ /block=ffn-only/) { ffn = 1; if (a != w) print "bad" }
            else { std = 1; if (a != op) print "bad" }
        }
        if (std && ffn) print "mixed"
    }' "$tmp/blk/results.csv" | sort -u | tr '\n' ' ')
if [ "$verdict" = "mixed " ] && grep -q "^| found | [0-9.]* | .* | \(- [a-z_]*\|[a-z_]* -\) | - |$" "$tmp/blk/report.md" &&
    grep -q "^| all-[a-z_]* | [0-9.]* | .* | \(- [a-z_]*\|[a-z_]* -\) | - |$" "$tmp/blk/report.md"; then
    ok "compare_attention leaves the attention gene of layers without attention as found; the report shows - for them"
else
    not_ok "compare_attention and ffn-only layers (verdict: ${verdict:-no mixed baseline at this seed})" \
        "$(cat "$tmp/blk/results.csv")" "$(grep "^| found\|^| all-" "$tmp/blk/report.md")"
fi
rm -f "$tmp/plugins/fake_attn.so"

# no validation examples: refused for a search, a one-architecture space trains and tests
write_ini "$tmp/nv" 100
"$etnas" run "$tmp/nv.ini" --set task.valid=0 >/dev/null 2>"$tmp/nv.err"
rc=$?
if [ $rc -eq 2 ] && [ "$(grep -c '^etnas run:' "$tmp/nv.err")" -eq 1 ] &&
    tail -n 1 "$tmp/nv.err" | grep -q "^etnas run: \[task\] synth has no validation examples" &&
    ! has_run "$tmp/nv/store.sqlite"; then
    ok "a search without validation examples is refused in one line, exit 2, leaving no run in the store"
else
    not_ok "search without valid" "exit $rc" "$(cat "$tmp/nv.err")"
fi
sed -i -e 's/^encoder_embed_dim = .*/encoder_embed_dim = 16/' -e 's/^encoder_layers = .*/encoder_layers = 1/' \
    -e 's/^encoder_ffn_dim = .*/encoder_ffn_dim = 16/' -e 's/^encoder_heads = .*/encoder_heads = 2/' "$tmp/nv.ini"
"$etnas" run "$tmp/nv.ini" --set task.valid=0 >"$tmp/nv.out" 2>"$tmp/nv.err"
rc=$?
if [ $rc -eq 0 ] && grep -q '^| random | 1 | 1 | - | 0\.[0-9]* |' "$tmp/nv.out"; then
    ok "one architecture without validation examples is trained and tested (valid: -)"
else
    not_ok "one arch without valid" "exit $rc" "$(cat "$tmp/nv.out")" "$(tail -n 3 "$tmp/nv.err")"
fi

# init_from: a run that starts from another run's final supernet checkpoint
# and trains 0 steps tests that run's weights (a 0-step run without it tests
# its own initial draw); a file that does not fit is refused before anything
# runs, in one line naming the option and the file, exit 2
nv0() { # OUT [--set ...]
    out=$1
    shift
    "$etnas" run "$tmp/nv.ini" --set task.valid=0 --set final.retrain=false \
        --set experiment.output="$tmp/$out" "$@" >"$tmp/$out.out" 2>"$tmp/$out.err"
}
test_of() { awk -F, 'NR == 2 {print $5}' "$tmp/$1/results.csv"; }
nv0 w0
nv0 w1 --set train.steps=0 --set train.init_from="$tmp/w0/supernet.ckpt"
rc=$?
nv0 w3 --set train.steps=0
t0=$(test_of w0) t1=$(test_of w1) t3=$(test_of w3)
if [ $rc -eq 0 ] && [ -n "$t0" ] && [ "$t0" = "$t1" ] && [ "$t1" != "$t3" ] &&
    grep -q "supernet: parameters from $tmp/w0/supernet.ckpt" "$tmp/w1.err"; then
    ok "train.init_from starts from a checkpoint's weights (0 steps test them: $t1; its own draw: $t3)"
else
    not_ok "init_from" "exit $rc: tested $t1, the checkpoint's run $t0, the own draw $t3" "$(tail -n 3 "$tmp/w1.err")"
fi
bad=0
for f in "$tmp/none.ckpt" "$tmp/a/supernet.ckpt"; do
    rm -rf "$tmp/w2"
    nv0 w2 --set train.init_from="$f"
    rc=$?
    { [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/w2.err")" -eq 1 ] &&
        grep -q "^etnas run: --set: \[train\] init_from: $f: " "$tmp/w2.err" &&
        ! has_run "$tmp/w2/store.sqlite"; } || { bad=1; cat "$tmp/w2.err"; }
done
[ $bad -eq 0 ] && ok "init_from a missing file or another space's checkpoint: one line naming it, exit 2, no run stored" ||
    not_ok "init_from refusals"

# killed runs: a longer supernet so the kills land in training and search
write_ini "$tmp/full" 1500
"$etnas" run "$tmp/full.ini" >/dev/null 2>&1 || not_ok "uninterrupted long run"
write_ini "$tmp/k" 1500
killed=0
for delay in 0.2 0.5 0.9 1.4; do
    if [ $killed -eq 0 ]; then "$etnas" run "$tmp/k.ini" >/dev/null 2>&1 & else "$etnas" run "$tmp/k.ini" --resume >/dev/null 2>&1 & fi
    pid=$!
    sleep $delay
    kill -9 $pid 2>/dev/null && killed=$((killed + 1))
    wait $pid 2>/dev/null
    has_run "$tmp/k/store.sqlite" || killed=0
done
"$etnas" run "$tmp/k.ini" --resume >/dev/null 2>"$tmp/k.err"
rc=$?
if [ $rc -eq 0 ] && [ "$(results "$tmp/full")" = "$(results "$tmp/k")" ]; then
    ok "killed $killed times and resumed: the same results as an uninterrupted run"
else
    not_ok "kill and resume" "exit $rc: $(cat "$tmp/k.err")" "$(results "$tmp/full")" "$(results "$tmp/k")"
fi
[ $killed -ge 1 ] && ok "at least one kill landed before the run finished" || not_ok "no kill landed (the run finished too fast)"

[ $fails -eq 0 ]
