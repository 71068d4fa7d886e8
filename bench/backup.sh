#!/usr/bin/env bash
# Backup benchmark, side by side in one run on the same data directory:
#  - the disk's sequential write speed (dd, direct I/O), `cp -a` + sync, and
#    `tar -c | zstd -1` of the data directory and of only the files a backup holds
#    (the same data) — the peers;
#  - `lazaret backup create --full` (MB/s of store read), then an incremental one
#    after 1% new mail (its share of the full backup's time, whether it copied any
#    pack the full one holds unchanged, and how much of the database it copied);
#  - SMTP p99 DATA->250 at a paced load, idle, while full backups run back to back,
#    and while tar | zstd -1 of the same files does (the peer under the same load);
#  - `lazaret backup restore` (MB/s), checked byte for byte (restore checks every
#    file's SHA-256) and with SQLite's integrity_check;
#  - `lazaret lockdown --no-backup` and `lazaret recover` (after a new body signature)
#    on the store, and `lazaret rescan` (after another) for comparison with the rescan
#    step of recover.
# The store: USERS mailboxes x PER_USER messages from bench/find_seed.py (mbox,
# imported), plus WORMS worm copies.
#
# Needs: python3, zstd, bc, sqlite3. Run as root (drops caches between steps).
#   bench/backup.sh          # USERS=100 PER_USER=1000 WORMS=5000 RATE=200 LOAD_SECS=20
# BACKUP_DIR: where the backups go (default: beside the store, on the same disk, the
# worst case); the docs advise another disk, which this machine does not have.
set -euo pipefail
USERS=${USERS:-100}
PER_USER=${PER_USER:-1000}
WORMS=${WORMS:-5000}
RATE=${RATE:-200}
# How long each SMTP load runs: its p99 is its slowest 1%, and over 8 s at 200/s that
# was 16 messages, three or four group commits: one checkpoint more or less in the run
# moved the 105,000-message ratio between 0.95x and 3.9x. 20 s gives 40.
LOAD_SECS=${LOAD_SECS:-20}

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lazaret-backup.XXXXXX)
# LAZARET_BIN: a binary built beforehand (an A/B build, or one kept apart from a tree
# that is being edited); else the release build of this tree.
LZ=${LAZARET_BIN:-$root/target/release/lazaret}
if [ -n "${BACKUP_DIR:-}" ]; then
  backup_dir=$(mktemp -d "$BACKUP_DIR/lazaret-backups.XXXXXX")
  ln -s "$backup_dir" "$work/backups"
fi
cleanup() {
  [ -n "${lz_pid:-}" ] && kill "$lz_pid" 2>/dev/null || true
  # KEEP_LOG=FILE keeps the server's log (with LAZARET_LOG=lazaret::backup=debug: the
  # phases of each backup).
  [ -n "${KEEP_LOG:-}" ] && cp "$work/lz/err" "$KEEP_LOG" 2>/dev/null || true
  # KEEP_WORK=1 keeps the store and its backups (to try more backups on it by hand).
  [ -n "${KEEP_WORK:-}" ] && { echo "kept $work" >&2; return; }
  rm -rf "$work" "${backup_dir:-}"
}
trap cleanup EXIT
[ -n "${LAZARET_BIN:-}" ] || (cd "$root" && cargo build --release -q -p lazaret)
wait_until() { for _ in $(seq 1 36000); do "$@" && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

echo "seeding $USERS x $PER_USER messages + $WORMS worm copies ..." >&2
python3 "$root/bench/find_seed.py" --users "$USERS" --per-user "$PER_USER" --worms "$WORMS" --out "$work/seed" >/dev/null
python3 "$root/bench/find_seed.py" --users "$USERS" --per-user "$((PER_USER / 100))" --worms 0 --seed 7 --out "$work/more" >/dev/null

mkdir -p "$work/lz"
cat > "$work/lz/lazaret.toml" <<CFG
data_dir = "$work/lz/data"
$([ "$(id -u)" = 0 ] && printf '[server]\nuser = "root"   # benchmarks run as root here\n')
[smtp]
listen = ["127.0.0.1:0"]
[imap]
listen = ["127.0.0.1:0"]
[pop3]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
[admin]
listen = "127.0.0.1:0"
[backup]
dir = "$work/backups"
CFG
L="$LZ -c $work/lz/lazaret.toml"
"$LZ" serve -c "$work/lz/lazaret.toml" >"$work/lz/out" 2>"$work/lz/err" &
lz_pid=$!
wait_until test -f "$work/lz/data/listeners.json"
smtp=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['smtp'][0])" "$work/lz/data/listeners.json")
echo "importing ..." >&2
seq 0 $((USERS - 1)) | xargs -P 2 -I{} sh -c "echo pw | $L user add user{}@localhost --password-stdin >/dev/null"
seq 0 $((USERS - 1)) | xargs -P 2 -I{} $L import --user user{}@localhost "$work/seed/mbox/user{}.mbox" >/dev/null
# Caught up: the text index, and the outbreak clusters (filed a batch a second beside
# the SMTP loads once a minute old, their cold-cache batches put the idle p99 at
# 12.5 ms in one run, against 3.0 in the next).
indexed() { [ "$($L status --json | python3 -c 'import json,sys;s=json.load(sys.stdin)["store"];print(s["text_index_behind"] + s.get("clusters_behind", 0))')" = 0 ]; }
wait_until indexed
# Imported mail is not scanned: its rows carry no scan stamp yet. The first rescan of
# a store writes one on every row, which grows each row; later rescans rewrite them in
# place. At 1M messages the first pass took 39.3 s as `rescan`, then recover's rescan
# 34.2 s and `rescan` 31.6 s, and the database grew from 861 to 997 MB in the first
# (with recover first: 37.6 s, then `rescan` 33.2 s). Mail that came in over SMTP was
# stamped on ingest, so the store is given its first scan here, before any timing.
$L rescan >/dev/null
sync

# ---------------------------------------------------------------- peers
store_mb=$(du -sm "$work/lz/data" | cut -f1)
drop_caches
t0=$(now); dd if=/dev/zero of="$work/dd.out" bs=1M count=1024 oflag=direct status=none; dd_s=$(since "$t0"); rm -f "$work/dd.out"
drop_caches
t0=$(now); cp -a "$work/lz/data" "$work/cp"; sync; cp_s=$(since "$t0"); rm -rf "$work/cp"
drop_caches
t0=$(now); tar -C "$work/lz" -cf - data | zstd -1 -q -T0 > "$work/tar.zst"; sync; tar_s=$(since "$t0")
tar_out_mb=$(du -sm "$work/tar.zst" | cut -f1); rm -f "$work/tar.zst"
# The same tool over only the files a backup holds (the database and the packs; the
# text index and lookups.db are rebuilt after a restore): the same data as the backup.
( cd "$work/lz/data" && find lazaret.db blobs -type f ) > "$work/same-files"
same_mb=$(cd "$work/lz/data" && xargs du -cm < "$work/same-files" | tail -1 | cut -f1)
drop_caches
t0=$(now); tar -C "$work/lz/data" -cf - -T "$work/same-files" | zstd -1 -q -T0 > "$work/tar.zst"; sync; tar_same_s=$(since "$t0")
rm -f "$work/tar.zst"

# ---------------------------------------------------------------- Lazaret backup
drop_caches
# What the server process made the disk write during the backup (its compressed files,
# and before 2026-12-03 also a raw copy of the database), from /proc/PID/io.
io_written() { awk '/^write_bytes/{print $2}' "/proc/$lz_pid/io"; }
w0=$(io_written)
t0=$(now); full=$($L backup create --full --json); full_s=$(since "$t0")
sync; full_io_mb=$(echo "($(io_written) - $w0) / 1000000" | bc -l)
full_id=$(echo "$full" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
full_mb=$(echo "$full" | python3 -c 'import json,sys;print(json.load(sys.stdin)["total_bytes"]/1e6)')
full_out_mb=$(echo "$full" | python3 -c 'import json,sys;print(json.load(sys.stdin)["stored_bytes"]/1e6)')
echo "adding 1% new mail ..." >&2
seq 0 $((USERS - 1)) | xargs -P 2 -I{} $L import --user user{}@localhost "$work/more/mbox/user{}.mbox" >/dev/null
sync; drop_caches
t0=$(now); incr=$($L backup create --json); incr_s=$(since "$t0")
incr_id=$(echo "$incr" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
# Packs the full backup holds at the same length, copied again by the incremental one.
recopied=$(python3 - "$work/backups" "$full_id" "$incr_id" <<'PY'
import json, sys
d, a, b = sys.argv[1:]
full = {f["name"]: f for f in json.load(open(f"{d}/{a}/manifest.json"))["files"]}
incr = json.load(open(f"{d}/{b}/manifest.json"))["files"]
print(sum(1 for f in incr if f["append_only"] and f["stored_in"] == b
          and f["name"] in full and full[f["name"]]["size"] == f["size"]))
PY
)
# What the incremental stored of the packs: the appended bytes of grown ones, and
# new ones whole.
pack_copy=$(python3 - "$work/backups" "$incr_id" <<'PY'
import json, sys
d, b = sys.argv[1:]
files = [f for f in json.load(open(f"{d}/{b}/manifest.json"))["files"] if f["name"].startswith("blobs/")]
own = [f for f in files if f["stored_in"] == b]
appended = sum(f["layers"][-1]["size"] for f in own if f.get("layers"))
whole = sum(f["size"] for f in own if not f.get("layers"))
print(f"packs: {appended / 1e6:.1f} MB appended to {sum(1 for f in own if f.get('layers'))} grown, {whole / 1e6:.1f} MB in {sum(1 for f in own if not f.get('layers'))} new")
PY
)
# The incremental's database: its page copy's size against the whole file's.
db_copy=$(python3 - "$work/backups" "$incr_id" <<'PY'
import json, sys
d, b = sys.argv[1:]
[db] = [f for f in json.load(open(f"{d}/{b}/manifest.json"))["files"] if f["name"] == "lazaret.db"]
layers = db.get("layers", [])
if layers:
    print(f"page copy {layers[-1]['size'] / 1e6:.1f} MB of a {db['size'] / 1e6:.1f} MB database")
else:
    print(f"whole database, {db['size'] / 1e6:.1f} MB")
PY
)

# ---------------------------------------------------------------- SMTP during a backup
# The 1% new mail is still being indexed (text index, lookups) when the incremental
# backup is done: the idle load must not run beside that (at 1M messages it put the
# idle p99 at 45.6 ms, against 18.8 during a backup).
wait_until indexed
echo pw | $L user add load@localhost --password-stdin >/dev/null
# TRACE_DIR=DIR keeps each load's replies (time, latency) as DIR/<load>.tsv, to line
# the slow ones up with the backup's phases in the server's log (KEEP_LOG).
load() { python3 "$root/bench/smtp_load.py" "$smtp" --sessions 10 --messages $((RATE * LOAD_SECS)) --size 10240 --to load@localhost --rate "$RATE" ${TRACE_DIR:+--trace "$TRACE_DIR/$1.tsv"}; }
# A warm-up first, so that idle and during start from the same page cache (the steps
# above dropped it); then full backups back to back for the whole of the second load:
# a single backup of a small store is over long before the load is.
load warm-up >/dev/null
idle=$(load idle)
rm -f "$work/load-done"
( while [ ! -f "$work/load-done" ]; do $L backup create --full --json >/dev/null; during_backups=$((${during_backups:-0} + 1)); echo "$during_backups" > "$work/during-backups"; done ) &
backup_pid=$!
sleep 0.5
during=$(load during)
touch "$work/load-done"
wait "$backup_pid"
during_backups=$(cat "$work/during-backups")
# The peer under the same load: tar | zstd -1 over the same files, back to back.
rm -f "$work/load-done"
( while [ ! -f "$work/load-done" ]; do
    tar -C "$work/lz/data" -cf - -T "$work/same-files" 2>/dev/null | zstd -1 -q -T0 > "$work/tar-during.zst" || true
    sync "$work/tar-during.zst"
  done ) &
backup_pid=$!
sleep 0.5
during_tar=$(load during-tar)
touch "$work/load-done"
wait "$backup_pid"
rm -f "$work/tar-during.zst"

# ---------------------------------------------------------------- restore
drop_caches
t0=$(now); $L backup restore "$incr_id" --to "$work/restored" >/dev/null; sync; restore_s=$(since "$t0")
integrity=$(sqlite3 "$work/restored/lazaret.db" "PRAGMA integrity_check")
restored_mb=$(echo "$incr" | python3 -c 'import json,sys;print(json.load(sys.stdin)["total_bytes"]/1e6)')
# The first start on the restored store rebuilds what backups leave out (lookups.db;
# the text index catches up in the background): until its listeners are up.
t0=$(now)
"$LZ" serve -c "$work/restored/lazaret.toml" >"$work/restored.out" 2>"$work/restored.err" &
restored_pid=$!
wait_until test -f "$work/restored/listeners.json"
first_start_s=$(since "$t0")
kill "$restored_pid"; wait "$restored_pid" 2>/dev/null || true

# ---------------------------------------------------------------- runbook
t0=$(now); $L lockdown --no-backup >/dev/null; lockdown_s=$(since "$t0")
# As on the day: a new body signature, then `recover` (refused without one), whose
# rescan reads every message again.
printf 'Bench.Outbreak:0:*:6f7574627265616b2d6279746573\n' > "$work/outbreak.ndb"
$L signatures add "$work/outbreak.ndb" >/dev/null
drop_caches
t0=$(now); recover_out=$($L recover); recover_s=$(since "$t0")
echo "$recover_out" >&2
# Each step prints its seconds: the rescan step is what compares with `rescan`.
recover_rescan_s=$(echo "$recover_out" | awk '$1 == "rescan" { print $3 }')
# The same rescan work by hand: a new body signature, so every message is read again.
printf 'Bench.Nothing:0:*:6e6f2d737563682d6279746573\n' > "$work/nothing.ndb"
$L signatures add "$work/nothing.ndb" >/dev/null
drop_caches
t0=$(now); $L rescan >/dev/null; rescan_s=$(since "$t0")

python3 - <<PY
import json, os
idle, during = json.loads('''$idle'''), json.loads('''$during''')
during_tar = json.loads('''$during_tar''')
store_mb, full_mb = float("$store_mb"), float("$full_mb")
def result(name, lazaret, peer, ratio):
    # One line per figure for bench/quick.sh: name, Lazaret, peer, ratio (>1: Lazaret better).
    if os.environ.get("BENCH_RESULTS"):
        with open(os.environ["BENCH_RESULTS"], "a") as out:
            out.write(f"{name}\t{lazaret:.4g}\t{peer:.4g}\t{ratio:.3f}\n")
full_rate = full_mb / float("$full_s")
tar_rate = store_mb / float("$tar_s")
tar_same_rate = float("$same_mb") / float("$tar_same_s")
cp_rate = store_mb / float("$cp_s")
dd_rate = 1024 * 1.048576 / float("$dd_s")
restore_rate = float("$restored_mb") / float("$restore_s")
print(f"store: {full_mb:.0f} MB in the backup's files ({store_mb:.0f} MB data directory, text index included)")
print(f"{'':34}{'Lazaret':>10}{'peer':>10}{'ratio':>8}")
print(f"{'full backup MB/s vs tar|zstd -1':34}{full_rate:10.1f}{tar_rate:10.1f}{full_rate / tar_rate:7.2f}x")
print(f"{'  same files only (db + packs)':34}{full_rate:10.1f}{tar_same_rate:10.1f}{full_rate / tar_same_rate:7.2f}x")
print(f"{'full backup MB/s vs cp -a + sync':34}{full_rate:10.1f}{cp_rate:10.1f}{full_rate / cp_rate:7.2f}x")
print(f"{'  (disk sequential write, dd)':34}{'':10}{dd_rate:10.1f}")
print(f"{'written MB: backup vs tar|zstd':34}{float('$full_out_mb'):10.1f}{float('$tar_out_mb'):10.1f}")
print(f"{'  disk writes by the server (MB)':34}{float('$full_io_mb'):10.1f}")
share = 100 * float("$incr_s") / float("$full_s")
print(f"{'incremental after 1% (s, % of full)':34}{float('$incr_s'):10.2f}{share:9.1f}%   unchanged packs copied again: $recopied; $pack_copy; $db_copy")
print(f"{'SMTP p99 at $RATE/s (ms) during/idle':34}{during['p99_ms']:10.2f}{idle['p99_ms']:10.2f}{during['p99_ms'] / idle['p99_ms']:7.2f}x   ($during_backups full backup(s) through the load)")
print(f"{'  during tar|zstd -1 instead (ms)':34}{during['p99_ms']:10.2f}{during_tar['p99_ms']:10.2f}{during_tar['p99_ms'] / during['p99_ms']:7.2f}x")
print(f"{'restore MB/s vs full backup':34}{restore_rate:10.1f}{full_rate:10.1f}{restore_rate / full_rate:7.2f}x   integrity_check: $integrity")
print(f"{'first start after restore (s)':34}{float('$first_start_s'):10.2f}   (rebuilds lookups.db)")
print(f"{'lockdown --no-backup (s)':34}{float('$lockdown_s'):10.2f}")
print(f"{'recover: its rescan step vs rescan':34}{float('$recover_rescan_s'):10.2f}{float('$rescan_s'):10.2f}{float('$rescan_s') / float('$recover_rescan_s'):7.2f}x   (the whole recover: {float('$recover_s'):.2f} s)")
result("backup full (MB/s) vs tar|zstd -1", full_rate, tar_rate, full_rate / tar_rate)
result("backup full (MB/s) vs tar|zstd -1 of its files", full_rate, tar_same_rate, full_rate / tar_same_rate)
result("backup full (MB/s) vs cp -a", full_rate, cp_rate, full_rate / cp_rate)
result("backup incremental after 1% (% of full time)", share, 100, 100 / share if share else 0)
result("backup SMTP p99 during/idle (x)", during["p99_ms"] / idle["p99_ms"], 1, idle["p99_ms"] / during["p99_ms"])
result("backup SMTP p99 during (ms) vs during tar|zstd -1", during["p99_ms"], during_tar["p99_ms"], during_tar["p99_ms"] / during["p99_ms"])
result("backup restore (MB/s) vs full backup", restore_rate, full_rate, restore_rate / full_rate)
result("backup lockdown --no-backup (s)", float("$lockdown_s"), 1, 1 / float("$lockdown_s"))
result("backup recover's rescan step (s) vs rescan", float("$recover_rescan_s"), float("$rescan_s"), float("$rescan_s") / float("$recover_rescan_s"))
result("backup recover whole (s) vs rescan", float("$recover_s"), float("$rescan_s"), float("$rescan_s") / float("$recover_s"))
PY
[ "$integrity" = ok ] && [ "$recopied" = 0 ]
