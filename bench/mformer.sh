#!/bin/sh
# The search benchmark of the HAT / RankNAS issue: one mFormer experiment
# (default etc/quickstart.ini; etc/deen-mformer.ini for translation) run
# with [final] compare_attention = true, then a summary of
#   - wall time per phase: each strategy's search (RankNAS's includes the
#     shared supernet's training, which it stops), each final retraining
#     (winners and their one-operator baselines), and the whole run;
#   - each strategy's evaluations and best validation metric (supernet
#     weights), its winner's test metric;
#   - the rankers' cross-validated Kendall tau, the latency predictor's
#     held-out RMSE and tau, predicted against measured latency;
#   - the found models against all-softmax / all-cosformer (test metric,
#     FLOPs, measured latency, each layer's operator).
# The run's directory (report.md, results.csv, store) stays in OUTDIR.
#   bench/mformer.sh [BUILDDIR] [OUTDIR] [INI] [--set SECTION.KEY=VALUE ...]
# Run alone: never beside another benchmark on a 2-core machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
# the positional arguments end at the first --set
build=$here/..
out=mformer-bench
ini=$here/../etc/quickstart.ini
[ $# -gt 0 ] && [ "$1" != --set ] && { build=$1; shift; }
[ $# -gt 0 ] && [ "$1" != --set ] && { out=$1; shift; }
[ $# -gt 0 ] && [ "$1" != --set ] && { ini=$1; shift; }
mkdir -p "$out"
rm -rf "$out/run"
# every log line with the seconds since the start, for the phase times
t0=$(date +%s.%N)
{
    rc=0
    "$build/etnas" run "$ini" --set experiment.output="$out/run" --set final.compare_attention=true \
        "$@" 2>&1 >"$out/table.txt" || rc=$?
    echo "exit $rc"
} |
    while IFS= read -r line; do
        printf '%.1f %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$line"
    done >"$out/log.txt"
tail -n 1 "$out/log.txt" | grep -q " exit 0$" || { tail -n 4 "$out/log.txt"; exit 1; }
echo "== $(basename "$ini") with compare_attention${*:+, $*}: $(tail -n 1 "$out/log.txt" | cut -d' ' -f1) s in all"
echo
echo "Wall time per phase (s):"
awk '/\] [0-9]+ evaluations \([0-9]+ from the store\) in [0-9.]+ s$/ {
        s = $5; sub(/\]$/, "", s)
        searches = searches sprintf("  search %-30s %8.1f  (%s evaluations)\n", s, $(NF - 1), $6) }
     function flush(t) {
        if (name != "") finals = finals sprintf("  final  %-30s %8.1f\n", name, t - start)
        name = "" }
     / final: retraining #[0-9]+ and scoring it on test$/ {
        flush($1)
        name = $0; sub(/^[0-9.]+ etnas: info: \[/, "", name); sub(/\] final:.*/, "", name)
        sub(/^search /, "", name); start = $1 }
     / etnas: info: report: / { flush($1) }
     END { printf "%s%s", searches, finals }' \
    "$out/log.txt"
sed -n 's/^\([0-9.]*\) etnas: info: ranknas: \(supernet training stopped .*\)$/  ranknas: \2 (at \1 s)/p' "$out/log.txt"
echo
echo "Results (valid: best with supernet weights; test: after the final retraining):"
awk '/^\| strategy / {on = 1} on && /^$/ {exit} on' "$out/table.txt"
echo
for f in "$out"/run/ranknas-*-rankers.md; do
    [ -f "$f" ] || continue
    echo "RankNAS rankers:"
    sed -n '/^| ranker /,/^$/p' "$f"
done
sed -n 's/^[0-9.]* etnas: info: \(latency_mlp: predicted latency on .*\)$/\1\n/p' "$out/log.txt"
sed -n '/^## Predicted against measured/,/^Over /p' "$out/run/report.md"
echo
sed -n '/^## The found model against one operator throughout/,/^\(## [^T]\|!\[\)/p' "$out/run/report.md" |
    grep -v '^\(## [^T]\|!\[\)' || true
