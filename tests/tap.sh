# TAP helpers for the shell tests (sourced, not run): ok and not_ok number
# the checks; not_ok prints its extra arguments as diagnostics and counts
# the failure in $fails, which each test turns into its exit status.
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
# has_run STORE: the store holds a run ($etnas report reads one). A run
# killed in its first moments may leave a store file without one, and such
# a run is started again, not resumed. Uses $etnas and $tmp of the test.
has_run() { mkdir -p "$tmp/has_run" && "$etnas" report "$1" --out "$tmp/has_run" >/dev/null 2>&1; }
