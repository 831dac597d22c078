#!/usr/bin/env bash
# bench-jobs.sh: benchmark ferry's job queue and River on the same
# PostgreSQL, one after the other, and print both sets of results.
#
#   bash scripts/bench-jobs.sh [URL]
#
# URL is the database (default: $FERRY_BENCH_DB, else the test database
# postgres://postgres@127.0.0.1:5432/test?sslmode=disable). Each benchmark
# works in tables or a schema of its own and drops them at the end.
# Extra flags for each side, with their own names (see `go run ./cmd/ferry
# bench jobs -h` and `cd bench/river && go run . -h`):
#
#   FERRY_ARGS='--workers 100' RIVER_ARGS='--workers 100' bash scripts/bench-jobs.sh
#
# Results go to stdout as JSON lines in ferry's bench format (bench "jobs",
# system "ferry" or "river"), ferry's first; progress goes to stderr. Both
# run even if the first fails; the exit status is non-zero if either did.
set -uo pipefail

db=${1:-${FERRY_BENCH_DB:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}}
read -r -a ferry_args <<<"${FERRY_ARGS:-}"
read -r -a river_args <<<"${RIVER_ARGS:-}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin

status=0
echo "bench-jobs: ferry: go run ./cmd/ferry bench jobs --db URL --json ${ferry_args[*]}" >&2
go run ./cmd/ferry bench jobs --db "$db" --json "${ferry_args[@]}" || {
  echo "bench-jobs: ferry's benchmark failed" >&2
  status=1
}
# River is a module of its own (bench/river/go.mod), so that ferry does not
# depend on it.
echo "bench-jobs: river: (cd bench/river && go run . --db URL --json ${river_args[*]})" >&2
(cd bench/river && go run . --db "$db" --json "${river_args[@]}") || {
  echo "bench-jobs: River's benchmark failed" >&2
  status=1
}
exit "$status"
