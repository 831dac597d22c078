#!/usr/bin/env bash
# test.sh: the project's test command, for developers and CI alike.
#
#   bash scripts/test.sh [go test flags...]     e.g. -run TestRelay -v
#
# Makes sure the services the tests need are up (starting, installing or
# configuring them: scripts/services.sh), then gofmt, go vet and go test.
# Extra arguments go to go test, after ./... . Any failure exits non-zero.
set -euo pipefail

# Services the Go tests talk to. Add a name here when a suite starts to use
# one (known: postgres mariadb redis rabbitmq nats).
SERVICES=(postgres mariadb redis rabbitmq nats)
# Command-line tools the tests run as independent clients.
TOOLS=(kcat)

# Where the tests find the databases (internal/testdb); a caller's own wins.
export FERRY_TEST_POSTGRES=${FERRY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
export FERRY_TEST_MYSQL=${FERRY_TEST_MYSQL:-root@tcp(127.0.0.1:3306)/test}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n=== %s (%ds)\n' "$*" "$SECONDS"; }

# Go lives in /usr/local/go on the project's machines; a bare PATH (sudo,
# cron, CI) may not have it.
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "test.sh: go not found: install Go (see go.mod for the version)" >&2; exit 1; }

step "services: ${SERVICES[*]} ${TOOLS[*]}"
bash scripts/services.sh "${SERVICES[@]}" "${TOOLS[@]}"

step "gofmt"
# Every .go file but those in hidden directories (.git, .cache), testdata
# and vendor, which a plain gofmt -l . would descend into.
if ! unformatted=$(find . \( -path '*/.*' -o -name testdata -o -name vendor \) -prune -o -name '*.go' -print0 |
  xargs -0 -r gofmt -l); then
  echo "test.sh: gofmt could not read some files (errors above)" >&2
  exit 1
fi
if [[ -n $unformatted ]]; then
  echo "test.sh: gofmt: these files need formatting (gofmt -w FILE):" >&2
  echo "$unformatted" >&2
  exit 1
fi

step "go vet ./..."
go vet ./...

step "go test ./...${*:+ $*}"
go test -count=1 -timeout 20m ./... "$@"

step "all passed"
