#!/usr/bin/env bash
# Outbound benchmark: Lazaret and Postfix side by side in one run, relaying the same
# queue to the same Postfix smtp-sink on loopback. Each server is first filled with
# MESSAGES messages of SIZE bytes (RCPTS recipients each) while its outbound delivery
# is held (Lazaret: `outbound disable`; Postfix: defer_transports = smtp); the clock
# runs from release (`outbound enable`; `postqueue -f`) until its queue is empty.
# Prints delivered messages/s for each and the ratio.
#
# Needs: postfix (smtp-sink) from Debian, python3, bc. Run as root (Postfix's master).
#   bench/outbound.sh                 # MESSAGES=5000 SIZE=10240 RCPTS=1
#   RCPTS=10 bench/outbound.sh
set -euo pipefail
MESSAGES=${MESSAGES:-5000}
SIZE=${SIZE:-10240}
RCPTS=${RCPTS:-1}
SESSIONS=${SESSIONS:-20}
SINK_PORT=${SINK_PORT:-2626}
PF_PORT=${PF_PORT:-2625}
# DKIM=rsa2048|ed25519: Lazaret signs every submitted message (a key for the load's
# From domain). With DKIM=rsa2048 Postfix signs too, through OpenDKIM as a milter (an
# RSA-2048 key, relaxed/relaxed, the way Debian's opendkim package is usually set up),
# unless PEER_SIGNS=0: the ratios then say what signing costs against a server that
# does none. Needs the opendkim package for the signing peer.
DKIM=${DKIM:-}
PEER_SIGNS=${PEER_SIGNS:-1}
DKIM_PORT=${DKIM_PORT:-8891}
pf_signs=
[ "$DKIM" = rsa2048 ] && [ "$PEER_SIGNS" = 1 ] && pf_signs=1

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lazaret-outbound.XXXXXX)
chmod 755 "$work"
LZ=$root/target/release/lazaret
LOAD="python3 $root/bench/smtp_load.py"
cleanup() {
  [ -n "${lz_pid:-}" ] && kill "$lz_pid" 2>/dev/null || true
  [ -n "${sink_pid:-}" ] && kill "$sink_pid" 2>/dev/null || true
  [ -n "${dkim_pid:-}" ] && kill "$dkim_pid" 2>/dev/null || true
  postfix -c "$work/pf/etc" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

(cd "$root" && cargo build --release -q -p lazaret)

wait_until() { # wait_until CMD... : poll up to 600 s
  for _ in $(seq 1 6000); do "$@" && return 0; sleep 0.1; done
  echo "timed out waiting for: $*" >&2; return 1
}
rcpts=$(for i in $(seq 1 10); do printf 'rcpt%s@sink.test,' "$i"; done); rcpts=${rcpts%,}

# SINK_DUMP=DIR: the sink keeps every message it receives there (to check what arrives,
# e.g. that both servers' copies carry a DKIM-Signature; costs disk writes).
if [ -n "${SINK_DUMP:-}" ]; then
  mkdir -p "$SINK_DUMP"; chmod 777 "$SINK_DUMP"
  smtp-sink -u nobody -d "$SINK_DUMP/%M." -m 1000 "127.0.0.1:$SINK_PORT" 1000 &
else
  smtp-sink -u nobody -m 1000 "127.0.0.1:$SINK_PORT" 1000 &
fi
sink_pid=$!
wait_until bash -c "exec 3<>/dev/tcp/127.0.0.1/$SINK_PORT" 2>/dev/null

# ---------------------------------------------------------------- Lazaret
mkdir -p "$work/lz"
cat > "$work/lz/lazaret.toml" <<CFG
data_dir = "$work/lz/data"
$([ "$(id -u)" = 0 ] && printf '[server]\nuser = "root"   # benchmarks run as root here\n')
[smtp]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
# One client sends everything as one user: the per-user rate limits (on by default)
# would measure themselves; Postfix's anvil limits are off by default.
[limits.submission]
messages = []
recipients = []
[admin]
listen = "127.0.0.1:0"
[[connector]]
name = "sink"
domains = ["*"]
smarthost = "127.0.0.1:$SINK_PORT"
CFG
"$LZ" serve -c "$work/lz/lazaret.toml" >"$work/lz/out" 2>"$work/lz/err" &
lz_pid=$!
wait_until test -f "$work/lz/data/listeners.json"
lz_sub=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['submission'][0])" "$work/lz/data/listeners.json")
lzc() { "$LZ" -c "$work/lz/lazaret.toml" "$@"; }
echo pw | lzc user add load@localhost --password-stdin >/dev/null
lz_remote() { # messages in the sink's queue (and still on their way there)
  lzc queue list --json | python3 -c "import json,sys;print(sum(q['messages'] for q in json.load(sys.stdin) if q['name'] not in ('local','poison')))"
}
lzc outbound disable >/dev/null
[ -n "$DKIM" ] && lzc dkim generate far.test --algorithm "$DKIM" >/dev/null
lz_fill=$($LOAD "$lz_sub" --sessions "$SESSIONS" --messages "$MESSAGES" --size "$SIZE" --to "$rcpts" \
  --rcpts-per-message "$RCPTS" --from load@localhost --auth load@localhost:pw)
lz_filled() { [ "$(lz_remote)" -ge "$MESSAGES" ]; }
lz_empty() { [ "$(lz_remote)" = 0 ]; }
wait_until lz_filled
t0=$(date +%s.%N)
lzc outbound enable >/dev/null
wait_until lz_empty
lz_secs=$(echo "$(date +%s.%N) - $t0" | bc)
lz_rss=$(awk '/VmHWM/{print $2}' /proc/$lz_pid/status)
kill "$lz_pid"; wait "$lz_pid" 2>/dev/null || true; lz_pid=

# ---------------------------------------------------------------- Postfix
pf=$work/pf
mkdir -p "$pf/etc" "$pf/spool" "$pf/data"
chown postfix "$pf/data"
cp /etc/postfix/master.cf "$pf/etc/master.cf"
cat > "$pf/etc/main.cf" <<CFG
compatibility_level = 3.6
queue_directory = $pf/spool
data_directory = $pf/data
maillog_file = $pf/maillog
maillog_file_prefixes = $work
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
relayhost = [127.0.0.1]:$SINK_PORT
smtp_tls_security_level = none
defer_transports = smtp
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 200
CFG
postconf -c "$pf/etc" -F '*/*/chroot = n'
postconf -c "$pf/etc" -MX smtp/inet
postconf -c "$pf/etc" -Me "127.0.0.1:$PF_PORT/inet = 127.0.0.1:$PF_PORT inet n - n - - smtpd"
if [ -n "$pf_signs" ]; then
  # OpenDKIM signs what Postfix's smtpd accepts from mynetworks (its InternalHosts).
  mkdir -p "$work/dkim"
  openssl genrsa -out "$work/dkim/bench.private" 2048 2>/dev/null
  cat > "$work/dkim/opendkim.conf" <<DK
Mode                    s
Domain                  far.test
Selector                bench
KeyFile                 $work/dkim/bench.private
Canonicalization        relaxed/relaxed
SignatureAlgorithm      rsa-sha256
Socket                  inet:$DKIM_PORT@127.0.0.1
InternalHosts           127.0.0.1
Syslog                  no
Background              no
RequireSafeKeys         no
DK
  opendkim -f -x "$work/dkim/opendkim.conf" &
  dkim_pid=$!
  wait_until bash -c "exec 3<>/dev/tcp/127.0.0.1/$DKIM_PORT" 2>/dev/null
  postconf -c "$pf/etc" -e "smtpd_milters = inet:127.0.0.1:$DKIM_PORT" "milter_default_action = tempfail"
fi
script -qc "postfix -c $pf/etc start" /dev/null
wait_until bash -c "exec 3<>/dev/tcp/127.0.0.1/$PF_PORT" 2>/dev/null
pf_filled() { [ "$(find "$pf/spool/deferred" -type f | wc -l)" -ge "$MESSAGES" ]; }
pf_empty() { [ "$(find "$pf/spool/incoming" "$pf/spool/active" "$pf/spool/deferred" -type f | wc -l)" = 0 ]; }
pf_fill=$($LOAD "127.0.0.1:$PF_PORT" --sessions "$SESSIONS" --messages "$MESSAGES" --size "$SIZE" --to "$rcpts" \
  --rcpts-per-message "$RCPTS" --from load@far.test)
wait_until pf_filled
postconf -c "$pf/etc" -e "defer_transports ="
postfix -c "$pf/etc" reload >/dev/null 2>&1
t0=$(date +%s.%N)
postqueue -c "$pf/etc" -f
wait_until pf_empty
pf_secs=$(echo "$(date +%s.%N) - $t0" | bc)
postfix -c "$pf/etc" stop >/dev/null 2>&1

# ---------------------------------------------------------------- report
python3 - "$lz_secs" "$pf_secs" "$lz_rss" "$lz_fill" "$pf_fill" <<PY
import json, sys
lz, pf, rss = map(float, sys.argv[1:4])
lz_in, pf_in = (json.loads(a)["msgs_per_sec"] for a in sys.argv[4:6])
dkim = "$DKIM"
tag = f", dkim {dkim}" if dkim else ""
import os
def result(name, lazaret, peer, ratio):
    # One line per figure for bench/quick.sh: name, Lazaret, peer, ratio (>1: Lazaret better).
    if os.environ.get("BENCH_RESULTS"):
        with open(os.environ["BENCH_RESULTS"], "a") as out:
            out.write(f"{name}\t{lazaret:.4g}\t{peer:.4g}\t{ratio:.3f}\n")
n = $MESSAGES
print(f"workload: {n} queued messages of {$SIZE} B, {$RCPTS} recipient(s) each, relayed to smtp-sink on loopback")
print(f"{'':28}{'Lazaret':>12}{'Postfix':>12}{'ratio':>8}")
print(f"{'queue drained in (s)':28}{lz:12.2f}{pf:12.2f}{pf/lz:7.2f}x")
print(f"{'delivered msgs/s':28}{n/lz:12.1f}{n/pf:12.1f}{(n/lz)/(n/pf):7.2f}x")
print(f"{'submission accepted msgs/s':28}{lz_in:12.1f}{pf_in:12.1f}{lz_in/pf_in:7.2f}x")
pf_signs = "$pf_signs" == "1"
if dkim:
    peer = "Postfix signs every message too (OpenDKIM milter, RSA-2048)" if pf_signs else "Postfix signs none"
    print(f"(Lazaret signs every message with DKIM {dkim}; {peer})")
print(f"Lazaret peak RSS: {rss/1024:.1f} MB")
peer_tag = " vs postfix+opendkim" if pf_signs else ""
result(f"outbound delivered msgs/s, {$RCPTS} rcpt{tag}{peer_tag}", n / lz, n / pf, pf / lz)
result(f"outbound submission accepted msgs/s{tag}{peer_tag}", lz_in, pf_in, lz_in / pf_in)
PY
rm -rf "$work"
