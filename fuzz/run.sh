#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), from the seeds in fuzz/seeds
# and the corpus grown by earlier runs (fuzz/corpus, not committed). A crash, hang or
# leak stops with exit 1; libFuzzer keeps the input in fuzz/artifacts/TARGET/ — make it
# a regression test in the normal suite, fix, run again. Prints one line per target:
# executions, seconds, corpus size.
#
# cargo-fuzz wants nightly compiler flags; the stable toolchain takes them with
# RUSTC_BOOTSTRAP=1. Installs cargo-fuzz from crates.io when it is missing. Built as the
# server is (release, no debug assertions): mail-parser 0.11 has a debug_assert! that
# fuzzed MIME trips in seconds and that its release build compiles out.
#   fuzz/run.sh          # every target, 60 s each
#   fuzz/run.sh 5 smtp_session imap_framer
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
targets=${*:-$(cargo fuzz list)}
cargo fuzz build -O 2>&1 | tail -3
# Debian's clamav-testfiles are real containers of every kind the scanner opens: seeds
# for the expanders, when installed.
if [ -d /usr/share/clamav-testfiles ]; then
  mkdir -p corpus/archives corpus/message_index
  find /usr/share/clamav-testfiles -type f -size -64k -exec cp -n {} corpus/archives/ \;
fi
failed=0
summary=()
for t in $targets; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  if cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    summary+=("$(printf '%-16s %12s runs in %4s s, corpus %5s inputs' "$t" "$runs" "$seconds" "$(ls "corpus/$t" | wc -l)")")
  else
    failed=1
    summary+=("$(printf '%-16s FAILED: see fuzz/artifacts/%s/ and %s' "$t" "$t" "$log")")
    tail -40 "$log" >&2
    continue
  fi
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
exit $failed
