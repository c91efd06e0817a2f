#!/usr/bin/env bash
# The query benchmark in one command: cxdb (pgwire, Flight SQL) against
# DuckDB and chDB on the same Parquet files; see benches/README.md.
#
#   benches/run.sh                      # 1,000,000 events → benches/results/queries.md
#   benches/run.sh --events 10000000    # the big run
#   benches/run.sh --events 200000 --out -   # a quick check, report on stdout only
#
# Arguments go to benches/queries.py (--help lists them). Builds the release
# binary, creates or reuses target/bench-venv, then runs the benchmark. Both
# the build and the run hold /tmp/cxdb-cargo.lock, so the benchmark never
# shares the machine with a compile started the same way.
set -euo pipefail
cd "$(dirname "$0")/.."

flock /tmp/cxdb-cargo.lock cargo build --release -p cxdb

venv=target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Reinstall only when the requirements changed.
stamp="$venv/.requirements"
if ! cmp -s benches/requirements.txt "$stamp"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/requirements.txt
  cp benches/requirements.txt "$stamp"
fi

export CXDB_BENCH_COMMAND="benches/run.sh${*:+ $*}"
exec flock /tmp/cxdb-cargo.lock "$venv/bin/python" benches/queries.py "$@"
