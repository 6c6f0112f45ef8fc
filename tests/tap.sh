# TAP helpers for the shell tests (sourced, not run): ok and not_ok number
# the checks; not_ok prints its extra arguments as diagnostics and counts
# the failure in $fails, which each test turns into its exit status.
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
