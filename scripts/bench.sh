#!/usr/bin/env bash
# make bench: builds and runs the end-to-end benchmark (bench/cmd/hookline-bench) against the
# local PostgreSQL, writing bench/results/<date>.json and .md. Every scenario by default (the
# floor, Hookline's, the crash of the all-in-one binary, and cluster: R3 on three loopback NATS
# nodes against R1 on one; 3 runs of 20 s: about half an hour, plus the cluster scenario's 18 runs).
# Pass flags in BENCH_ARGS, e.g. a short trial that leaves bench/results alone:
#   BENCH_ARGS="-duration 5s -runs 1 -scenarios floor,nats,latency -out /tmp/bench" make bench
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/tmp
go build -o bench/tmp/hookline-bench ./bench/cmd/hookline-bench
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
exec bench/tmp/hookline-bench -repo . ${BENCH_ARGS:-} "$@"
