#!/bin/sh
# Runs the storage benchmark and saves its report; see benches/README.md.
# Extra arguments are passed on, e.g. `benches/storage.sh --events 1000000`.
set -eu
cd "$(dirname "$0")/.."
exec cargo run --release -p cxdb -- bench storage --out benches/results/storage.md "$@"
