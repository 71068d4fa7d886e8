#!/usr/bin/env bash
# Outbreak clusters benchmark: a synthetic corpus from a fixed seed (tests/worm_corpus.py:
# CLEAN clean messages, a fifth of them templated newsletters, and FAMILIES worm
# families x COPIES copies, each copy with a new subject and sender and 5-20% of its
# words changed; family 0 re-zips its payload per copy, every third family carries only
# a link) is sent over SMTP to two Lazaret servers in turn: clusters on (the default)
# and `[outbreak] clusters = false`. Prints the ingest rate and p50 end-of-DATA->250 of
# both (the cost of fingerprints), then scores what `lazaret clusters` found against the
# truth: pairwise precision and recall of the worm families, clean messages in worm
# clusters, clusters among clean mail, and the time `clusters` takes to answer.
# A third server runs with `[outbreak] hold_growth = HOLD_GROWTH`: its ingest rate (the
# hold files each copy as it is routed) and what it froze — worm copies and families
# held, clean messages held (the goal: none).
# No peer has this feature (Postfix, Exim, Dovecot, Stalwart group nothing), so the
# peer of the rate is Lazaret itself with clusters off.
#
# Needs: python3. Run as root.
#   bench/clusters.sh      # CLEAN=100000 FAMILIES=20 COPIES=500 SESSIONS=20 HOLD_GROWTH=100/10m JOBS=1
#   CLEAN=1000000 JOBS=2 bench/clusters.sh      # the 1M run
set -euo pipefail
HOLD_GROWTH=${HOLD_GROWTH:-100/10m}
CLEAN=${CLEAN:-100000}
FAMILIES=${FAMILIES:-20}
COPIES=${COPIES:-500}
SESSIONS=${SESSIONS:-20}
USERS=${USERS:-50}
# Processes generating the clean mail; more than one draws another (still fixed) corpus.
JOBS=${JOBS:-1}

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lazaret-clusters.XXXXXX)
LZ=$root/target/release/lazaret
PY="python3 $root/bench/clusters.py"
cleanup() {
  [ -n "${lz_pid:-}" ] && kill "$lz_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
(cd "$root" && cargo build --release -q -p lazaret)
wait_until() { for _ in $(seq 1 36000); do "$@" && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }

$PY generate "$work/corpus" --clean "$CLEAN" --families "$FAMILIES" --copies "$COPIES" --users "$USERS" --jobs "$JOBS"
total=$((CLEAN + FAMILIES * COPIES))

# run NAME EXTRA_CONFIG: a fresh server, the corpus over SMTP, all in mailboxes.
run() {
  local name=$1 extra=$2 dir=$work/$1
  mkdir -p "$dir"
  cat > "$dir/lazaret.toml" <<CFG
data_dir = "$dir/data"
$([ "$(id -u)" = 0 ] && printf '[server]\nuser = "root"   # benchmarks run as root here\n')
[smtp]
listen = ["127.0.0.1:0"]
max_sessions = 1000
[submission]
listen = ["127.0.0.1:0"]
[imap]
listen = ["127.0.0.1:0"]
[pop3]
listen = ["127.0.0.1:0"]
[admin]
listen = "127.0.0.1:0"
$extra
CFG
  "$LZ" serve -c "$dir/lazaret.toml" >"$dir/out" 2>"$dir/err" &
  lz_pid=$!
  wait_until test -f "$dir/data/listeners.json"
  local smtp
  smtp=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['smtp'][0])" "$dir/data/listeners.json")
  "$LZ" -c "$dir/lazaret.toml" domain add corp.test
  python3 - "$work/corpus.meta.json" <<'PY' | while read -r u; do echo pw | "$LZ" -c "$dir/lazaret.toml" user add "$u" --password-stdin >/dev/null; done
import json, sys
print("\n".join(json.load(open(sys.argv[1]))["users"]))
PY
  sync
  $PY send "$smtp" "$work/corpus" "$work/$name.sent.json" --sessions "$SESSIONS" > "$work/$name.send"
  wait_until bash -c "'$LZ' -c '$dir/lazaret.toml' status --json | python3 -c \"import json,sys;s=json.load(sys.stdin)['store'];sys.exit(0 if s['in_mailboxes']+s['held_copies']>=$total and s['clusters_behind']==0 else 1)\""
}

run on ""
score=$($PY score "$LZ" "$work/on/lazaret.toml" "$work/corpus" "$work/on.sent.json")
kill "$lz_pid"; wait "$lz_pid" 2>/dev/null || true; lz_pid=
rm -rf "$work/on/data"
run off $'[outbreak]\nclusters = false'
kill "$lz_pid"; wait "$lz_pid" 2>/dev/null || true; lz_pid=
rm -rf "$work/off/data"
run hold "[outbreak]"$'\n'"hold_growth = \"$HOLD_GROWTH\""
held=$($PY held "$LZ" "$work/hold/lazaret.toml" "$work/corpus" "$work/hold.sent.json")
kill "$lz_pid"; wait "$lz_pid" 2>/dev/null || true; lz_pid=

python3 - "$(cat "$work/on.send")" "$(cat "$work/off.send")" "$score" "$(cat "$work/hold.send")" "$held" <<PY
import json, os, sys
on, off, s, hold, h = (json.loads(a) for a in sys.argv[1:6])
def result(name, lazaret, peer, ratio):
    if os.environ.get("BENCH_RESULTS"):
        with open(os.environ["BENCH_RESULTS"], "a") as out:
            out.write(f"{name}\t{lazaret:.4g}\t{peer:.4g}\t{ratio:.3f}\n")
print(f"corpus: {s['clean']} clean messages, {s['families']} worm families x {s['worm_copies'] // max(1, s['families'])} copies; {$SESSIONS} SMTP sessions")
print(f"{'':40}{'on':>10}{'off':>10}{'ratio':>8}")
print(f"{'ingest accepted msgs/s':40}{on['msgs_per_sec']:10.1f}{off['msgs_per_sec']:10.1f}{on['msgs_per_sec']/off['msgs_per_sec']:7.2f}x")
print(f"{'ingest p50 DATA->250 (ms)':40}{on['p50_ms']:10.2f}{off['p50_ms']:10.2f}   +{on['p50_ms']-off['p50_ms']:.2f} ms")
print(f"pairwise precision {s['precision']:.4f}, recall {s['recall']:.4f}; families found {s['families_found']}/{s['families']} "
      f"(worst: {s['worst_family_share_in_one_cluster']:.1%} of its copies in one cluster)")
print(f"clean messages in worm clusters: {s['clean_in_worm_clusters']}; clusters of clean mail only: {s['clean_clusters']}")
print(f"lazaret clusters answered in {s['clusters_seconds']:.3f} s ({s['messages']} messages stored, {s['clusters_listed']} clusters listed)")
print(f"{'ingest accepted msgs/s, hold on':40}{hold['msgs_per_sec']:10.1f}{off['msgs_per_sec']:10.1f}{hold['msgs_per_sec']/off['msgs_per_sec']:7.2f}x")
print(f"hold_growth = $HOLD_GROWTH: {h['worm_copies_held']} of {h['worm_copies']} worm copies held, {h['families_held']}/{h['families']} families; clean messages held: {h['clean_held']}")
result("clusters ingest msgs/s, on vs off", on["msgs_per_sec"], off["msgs_per_sec"], on["msgs_per_sec"] / off["msgs_per_sec"])
result("clusters ingest msgs/s, hold on vs off", hold["msgs_per_sec"], off["msgs_per_sec"], hold["msgs_per_sec"] / off["msgs_per_sec"])
result("clusters hold: clean messages held", h["clean_held"], 0, 0)
result("clusters hold: worm families held", h["families_held"], h["families"], h["families_held"] / max(1, h["families"]))
result("clusters pairwise precision", s["precision"], 1, s["precision"])
result("clusters pairwise recall", s["recall"], 1, s["recall"])
result("clusters clean messages in worm clusters", s["clean_in_worm_clusters"], 0, 0)
result("clusters list latency (s)", s["clusters_seconds"], 1, 1 / max(s["clusters_seconds"], 1e-6))
PY
