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

echo "== examples/embed (another module using the public packages)"
(cd examples/embed && go vet ./... && go run .)

# fuzz_one runs one target. Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" when -fuzztime runs out while a worker is still
# busy (golang/go#75804, fixed in Go 1.27). That report names no input and
# writes no reproducer, so it is retried; any other failure, and any run that
# writes a failing input, fails the suite at once.
fuzz_one() {
  local pkg=$1 target=$2 log attempt
  log=$(mktemp)
  for attempt in 1 2 3; do
    if go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
      rm -f "$log"; return 0
    fi
    if grep -q 'Failing input written' "$log" || ! grep -q '^    context deadline exceeded$' "$log" || [ "$attempt" = 3 ]; then
      break
    fi
    echo "   (fuzz coordinator deadline race, golang/go#75804; attempt $attempt failed that way, retrying)"
  done
  cat "$log"; rm -f "$log"; exit 1
}

echo "== fuzz smoke ($FUZZTIME per target)"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $pkg $target"
    fuzz_one "$pkg" "$target"
  done
done
echo "== all tests passed"
