#!/usr/bin/env bash
# Runs every fuzz target of the module for real, one after another, each
# for FUZZTIME (default 1m): `make fuzz FUZZTIME=10m`.
#   scripts/fuzz.sh --list   prints the targets, "./dir FuzzName" a line
#
# The targets are found, not listed by hand: every Fuzz function in a
# _test.go file is fuzzed, so a target added to any package is fuzzed
# with the rest (a hand-kept list once ran 4 of 9; docs_test.go checks
# this list against the Go parser's). The inputs a run finds interesting
# stay in Go's cache; a crasher is written to the package's
# testdata/fuzz/<FuzzName>/: commit it with its fix, and every
# `make test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
go=${GO:-go}

targets() {
	# Every func FuzzX(f *testing.F) in a _test.go file, as "./dir FuzzX",
	# sorted: go test takes one package and one -fuzz pattern at a time.
	find . \( -name .git -o -name .dev -o -name node_modules \) -prune -o -name '*_test.go' -print |
		sed 's|^\./||' | xargs grep -HE '^func Fuzz[A-Za-z0-9_]*\(' |
		sed -E 's|^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|./\1 \2|; s|^[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|. \1|' |
		sort
}

if [ "${1:-}" = --list ]; then
	targets
	exit 0
fi

list=$(targets)
if [ -z "$list" ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
while read -r pkg name; do
	echo "fuzz: $name ($pkg) for ${FUZZTIME:-1m}"
	"$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME:-1m}" "$pkg"
done <<<"$list"
