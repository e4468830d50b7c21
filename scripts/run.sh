#!/usr/bin/env bash
# make run: build the all-in-one and start it on the embedded NATS server. Every variable the
# caller set passes through; HOOKLINE_ALLOW_PRIVATE_TARGETS defaults to true here (and only
# here) so the local demo receiver on 127.0.0.1 can be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${HOOKLINE_ALLOW_PRIVATE_TARGETS+x}" ]; then
  export HOOKLINE_ALLOW_PRIVATE_TARGETS=true
  echo '{"level":"WARN","msg":"make run: HOOKLINE_ALLOW_PRIVATE_TARGETS was unset, set to true for the local demo; never do this in production"}' >&2
fi
mkdir -p bin
go build -o bin/hookline ./services/hookline
exec bin/hookline
