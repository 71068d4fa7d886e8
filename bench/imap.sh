#!/usr/bin/env bash
# IMAP benchmark: Lazaret and Dovecot side by side in one run, same messages.
# A 100,000-message INBOX (SELECT, first and again) and a 10,000-message INBOX
# (FETCH 1:* BODY.PEEK[] and FETCH 1:* ENVELOPE, second run of each), timed by the
# same raw-socket client (bench/imap_time.py). Dovecot gets the messages as a Maildir,
# Lazaret over SMTP (bench/imap_seed.py writes both from one seeded generator).
#
# Needs: dovecot-imapd from Debian, python3. Run as root (Dovecot's master).
#   bench/imap.sh                      # BIG=100000 SMALL=10000
set -euo pipefail
BIG=${BIG:-100000}
SMALL=${SMALL:-10000}
DC_PORT=${DC_PORT:-3143}

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lazaret-imap.XXXXXX)
chmod 755 "$work"
# LAZARET_BIN: a binary built beforehand (to compare two builds in turn).
LZ=${LAZARET_BIN:-$root/target/release/lazaret}
cleanup() {
  [ -n "${lz_pid:-}" ] && kill "$lz_pid" 2>/dev/null || true
  pkill -f "dovecot -c $work/dc/dovecot.conf" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${LAZARET_BIN:-}" ] || (cd "$root" && cargo build --release -q -p lazaret)
wait_until() { for _ in $(seq 1 6000); do "$@" && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }

# ---------------------------------------------------------------- Lazaret, seeded
mkdir -p "$work/lz" "$work/dc/home"
cat > "$work/lz/lazaret.toml" <<CFG
data_dir = "$work/lz/data"
$([ "$(id -u)" = 0 ] && printf '[server]\nuser = "root"   # benchmarks run as root here\n')
[smtp]
listen = ["127.0.0.1:0"]
[imap]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
[pop3]
listen = ["127.0.0.1:0"]
[admin]
listen = "127.0.0.1:0"
CFG
"$LZ" serve -c "$work/lz/lazaret.toml" >"$work/lz/out" 2>"$work/lz/err" &
lz_pid=$!
wait_until test -f "$work/lz/data/listeners.json"
addr() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]][0])" "$work/lz/data/listeners.json" "$1"; }
lz_smtp=$(addr smtp); lz_imap=$(addr imap)
for u in big small; do echo pw | "$LZ" -c "$work/lz/lazaret.toml" user add "$u@localhost" --password-stdin >/dev/null; done
python3 "$root/bench/imap_seed.py" --count "$BIG" --maildir "$work/dc/home/big/Maildir" --smtp "$lz_smtp" --rcpt big@localhost --seed 7
python3 "$root/bench/imap_seed.py" --count "$SMALL" --maildir "$work/dc/home/small/Maildir" --smtp "$lz_smtp" --rcpt small@localhost --seed 8
# Done: all delivered and the text index caught up. The indexer works through an
# import's backlog in the background after it (it waits for quiet moments); measured
# beside it, FETCH BODY[] shared the CPU with it (0.74-0.97x Dovecot, 1.04-1.41x idle).
# Both servers are measured idle: Dovecot's own indexing happens in its first SELECT,
# which is timed.
lz_done() {
  "$LZ" -c "$work/lz/lazaret.toml" status --json |
    python3 -c "import json,sys;st=json.load(sys.stdin)['store'];sys.exit(0 if st['in_mailboxes']>=$((BIG + SMALL)) and st['text_index_behind']==0 else 1)"
}
wait_until lz_done

# ---------------------------------------------------------------- Dovecot
mkdir -p "$work/dc/run"
chown -R nobody:nogroup "$work/dc/home"
cat > "$work/dc/dovecot.conf" <<CFG
base_dir = $work/dc/run
state_dir = $work/dc/run
log_path = $work/dc/log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~/Maildir
passdb {
  driver = static
  args = password=pw
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$work/dc/home/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DC_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
CFG
dovecot -c "$work/dc/dovecot.conf"
wait_until bash -c "exec 3<>/dev/tcp/127.0.0.1/$DC_PORT" 2>/dev/null

T="python3 $root/bench/imap_time.py"
measure() { # measure NAME ADDR -> sets NAME_sel1 NAME_sel2 NAME_fetch (JSON)
  printf -v "$1_sel1" '%s' "$($T "$2" big@localhost pw 'SELECT INBOX')"
  printf -v "$1_sel2" '%s' "$($T "$2" big@localhost pw 'SELECT INBOX')"
  $T "$2" small@localhost pw 'SELECT INBOX' 'FETCH 1:* (BODY.PEEK[])' 'FETCH 1:* (ENVELOPE)' >/dev/null
  printf -v "$1_fetch" '%s' "$($T "$2" small@localhost pw 'SELECT INBOX' 'FETCH 1:* (BODY.PEEK[])' 'FETCH 1:* (ENVELOPE)')"
}
measure lz "$lz_imap"
lz_rss=$(awk '/VmHWM/{print $2}' /proc/$lz_pid/status)
measure dc "127.0.0.1:$DC_PORT"
# Last, as it changes the big folder: an offline client's resync after 1% changed.
lz_resync=$(python3 "$root/bench/imap_resync.py" "$lz_imap" big@localhost pw)
dc_resync=$(python3 "$root/bench/imap_resync.py" "127.0.0.1:$DC_PORT" big@localhost pw)

python3 - "$lz_sel1" "$lz_sel2" "$lz_fetch" "$dc_sel1" "$dc_sel2" "$dc_fetch" "$lz_rss" "$lz_resync" "$dc_resync" <<PY
import json, sys
l1, l2, lf, d1, d2, df = (json.loads(a) for a in sys.argv[1:7])
rss = float(sys.argv[7])
lr, dr = json.loads(sys.argv[8]), json.loads(sys.argv[9])
import os
def result(name, lazaret, peer, ratio):
    # One line per figure for bench/quick.sh: name, Lazaret, peer, ratio (>1: Lazaret better).
    if os.environ.get("BENCH_RESULTS"):
        with open(os.environ["BENCH_RESULTS"], "a") as out:
            out.write(f"{name}\t{lazaret:.4g}\t{peer:.4g}\t{ratio:.3f}\n")
print(f"workload: SELECT a {$BIG}-message INBOX; FETCH 1:* from a {$SMALL}-message INBOX (same messages in both)")
print(f"{'':36}{'Lazaret':>10}{'Dovecot':>10}{'ratio':>8}")
def row(name, a, b):
    # The timer has 0.1 ms resolution: a 0.0 reading is under 0.1 ms.
    ratio = f"{b/a:7.2f}x" if a > 0 else f"  >{b/0.0001:.0f}x"
    print(f"{name:36}{a:10.4f}{b:10.4f}{ratio}")
big, small = f"{$BIG // 1000}k", f"{$SMALL // 1000}k"
for name, a, b in [
    (f"SELECT {big}, first (s)", l1[0]["seconds"], d1[0]["seconds"]),
    (f"SELECT {big}, again (s)", l2[0]["seconds"], d2[0]["seconds"]),
    (f"FETCH {small} BODY.PEEK[] (s)", lf[1]["seconds"], df[1]["seconds"]),
    (f"FETCH {small} ENVELOPE (s)", lf[2]["seconds"], df[2]["seconds"]),
]:
    row(name, a, b)
    # Under the timer's 0.1 ms resolution counts as 0.1 ms.
    result("imap " + name, a, b, b / max(a, 0.0001))
row(f"QRESYNC resync after 1% of {big} (s)", lr["resync_seconds"], dr["resync_seconds"])
result(f"imap QRESYNC resync after 1% of {big} (s)", lr["resync_seconds"], dr["resync_seconds"],
       dr["resync_seconds"] / max(lr["resync_seconds"], 0.0001))
share = lr["resync_bytes"] / lr["full_bytes"]
print(f"resync bytes: lazaret {lr['resync_bytes']} of a full FLAGS re-read's {lr['full_bytes']} ({share:.2%}); "
      f"dovecot {dr['resync_bytes']} of {dr['full_bytes']} ({dr['resync_bytes'] / dr['full_bytes']:.2%})")
print(f"SELECT (QRESYNC) + UID FETCH (CHANGEDSINCE VANISHED): lazaret {lr['select_and_fetch_seconds']:.4f} s "
      f"{lr['select_and_fetch_bytes']} bytes; dovecot {dr['select_and_fetch_seconds']:.4f} s {dr['select_and_fetch_bytes']} bytes")
print(f"full SELECT + FETCH 1:* (FLAGS): lazaret {lr['full_seconds']:.4f} s; dovecot {dr['full_seconds']:.4f} s")
# Lazaret's own share (a "max" goal in bench/quick.sh), Dovecot's beside it.
result("imap QRESYNC resync bytes, % of a full re-read", share * 100,
       dr["resync_bytes"] / dr["full_bytes"] * 100, 0)
print(f"bytes: BODY[] lazaret {lf[1]['bytes']} dovecot {df[1]['bytes']}; ENVELOPE lazaret {lf[2]['bytes']} dovecot {df[2]['bytes']}")
print(f"Lazaret peak RSS: {rss/1024:.1f} MB")
PY
