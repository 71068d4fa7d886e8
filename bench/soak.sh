#!/usr/bin/env bash
# Soak: a steady mixed load (SMTP in, submission out to smtp-sink, IMAP, POP3, admin
# finds and quarantines) for DURATION, sampling memory, descriptors, WAL and p99
# latencies every 10 s; prints each series' slope per hour (bench/soak.py says how).
#   bench/soak.sh 1h          # the long run; figures go in docs/RELIABILITY.md
#   bench/soak.sh 120s        # what CI runs (tests/test_soak.py, with the guard)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
duration=${1:-1h}
case $duration in
  *h) seconds=$(( ${duration%h} * 3600 )) ;;
  *m) seconds=$(( ${duration%m} * 60 )) ;;
  *s) seconds=${duration%s} ;;
  *) seconds=$duration ;;
esac
(cd "$root" && cargo build --release -q -p lazaret)
exec python3 "$root/bench/soak.py" --seconds "$seconds" --guard --json "${SOAK_JSON:-/tmp/lazaret-soak.json}"
