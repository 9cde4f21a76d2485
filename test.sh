#!/usr/bin/env bash
# The whole test suite: formatting, vet, race-enabled tests and a short fuzz
# smoke run of every fuzz target. FUZZTIME sets the per-target fuzz time.
set -euo pipefail
cd "$(dirname "$0")"
FUZZTIME="${FUZZTIME:-10s}"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

echo "== fuzz smoke ($FUZZTIME per target)"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $pkg $target"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" >/tmp/stratus-fuzz.log 2>&1 || { cat /tmp/stratus-fuzz.log; exit 1; }
  done
done
echo "== all tests passed"
