#!/usr/bin/env bash
# make bench: builds and runs the end-to-end benchmark (bench/cmd/hookline-bench) against the
# local PostgreSQL, writing bench/results/<date>.json and .md. Pass flags in BENCH_ARGS, e.g.
#   BENCH_ARGS="-duration 5s -runs 1 -scenarios nats,latency" make bench
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/tmp
go build -o bench/tmp/hookline-bench ./bench/cmd/hookline-bench
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
exec bench/tmp/hookline-bench -repo . ${BENCH_ARGS:-} "$@"
