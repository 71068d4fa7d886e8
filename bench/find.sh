#!/usr/bin/env bash
# Find-and-act benchmark, side by side in one run:
#  1. A store of USERS mailboxes x PER_USER messages plus WORMS worm copies (new subject
#     and sender on every copy, same zip attachment), written by bench/find_seed.py as
#     mbox files (imported into Lazaret) and Maildirs (for Dovecot), the same bytes.
#     Timed: find by subject substring, body text, attachment SHA-256, sender
#     (`lazaret find --ids-only` vs `doveadm search -A`); the web console's Find page
#     for the same searches (50 rows, and page 100: time to first byte and to the last,
#     bytes); quarantine of every worm copy
#     (`lazaret quarantine --sha256`) vs `doveadm expunge -A ... body`; restore.
#  2. A queue of QUEUE_WORMS worm copies in Postfix (held by defer_transports) and in
#     Lazaret (queue `local` frozen): find them by attachment name (`postqueue -j` +
#     `postcat` per message vs `lazaret find --in queues`) and delete them without
#     bounces (`postsuper -d -` vs `lazaret delete --no-ndr`).
# Every figure is the median of RUNS runs (searches) or one run (actions).
#
# Needs: dovecot-imapd (doveadm), postfix, python3, bc. Run as root.
#   bench/find.sh                       # USERS=1000 PER_USER=1000 WORMS=50000 QUEUE_WORMS=50000
set -euo pipefail
USERS=${USERS:-1000}
PER_USER=${PER_USER:-1000}
WORMS=${WORMS:-50000}
QUEUE_WORMS=${QUEUE_WORMS:-50000}
RUNS=${RUNS:-3}
PF_PORT=${PF_PORT:-2725}

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lazaret-find.XXXXXX)
chmod 755 "$work"
# LAZARET_BIN: a binary built beforehand (kept apart from a tree that is being edited).
LZ=${LAZARET_BIN:-$root/target/release/lazaret}
cleanup() {
  [ -n "${lz_pid:-}" ] && kill "$lz_pid" 2>/dev/null || true
  postfix -c "$work/pf/etc" stop >/dev/null 2>&1 || true
  pkill -f "dovecot -c $work/dc/dovecot.conf" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${LAZARET_BIN:-}" ] || (cd "$root" && cargo build --release -q -p lazaret)
wait_until() { for _ in $(seq 1 36000); do "$@" && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }
now() { date +%s.%N; }
T="python3 $root/bench/timecmd.py $RUNS"
# Deletions leave the message rows to the background reclaim: wait for it before the
# next step (it would run beside the peer's), and time it as its own row.
reclaimed() { [ "$($L status --json | python3 -c 'import json,sys;print(json.load(sys.stdin)["store"]["reclaim_behind"])')" = 0 ]; }
field() { python3 -c "import json,sys;print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# ---------------------------------------------------------------- the store
echo "seeding $USERS x $PER_USER messages + $WORMS worm copies ..." >&2
facts=$(python3 "$root/bench/find_seed.py" --users "$USERS" --per-user "$PER_USER" --worms "$WORMS" --out "$work/seed")
sha=$(field "$facts" worm_sha256); lure=$(field "$facts" lure)
subject=$(field "$facts" subject); sender=$(field "$facts" sender)

# ---------------------------------------------------------------- Lazaret
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
CFG
L="$LZ -c $work/lz/lazaret.toml"
"$LZ" serve -c "$work/lz/lazaret.toml" >"$work/lz/out" 2>"$work/lz/err" &
lz_pid=$!
wait_until test -f "$work/lz/data/lazaret.db"
wait_until test -f "$work/lz/data/listeners.json"
echo "adding $USERS users ..." >&2
seq 0 $((USERS - 1)) | xargs -P 2 -I{} sh -c "echo pw | $L user add user{}@localhost --password-stdin >/dev/null"
echo "importing into Lazaret ..." >&2
t0=$(now)
seq 0 $((USERS - 1)) | xargs -P 2 -I{} $L import --user user{}@localhost "$work/seed/mbox/user{}.mbox" >/dev/null
lz_import=$(echo "$(now) - $t0" | bc)

# ---------------------------------------------------------------- Dovecot
mkdir -p "$work/dc/run"
for u in $(seq 0 $((USERS - 1))); do
  echo "user$u@localhost:{PLAIN}pw:65534:65534::$work/seed/maildir/user$u::"
done > "$work/dc/passwd"
chown -R nobody:nogroup "$work/seed/maildir"
cat > "$work/dc/dovecot.conf" <<CFG
base_dir = $work/dc/run
state_dir = $work/dc/run
log_path = $work/dc/log
protocols =
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = $work/dc/passwd
}
userdb {
  driver = passwd-file
  args = $work/dc/passwd
}
service anvil {
  chroot =
}
CFG
dovecot -c "$work/dc/dovecot.conf"
wait_until test -S "$work/dc/run/auth-userdb"
DA="doveadm -c $work/dc/dovecot.conf"
echo "building Dovecot's indexes ..." >&2
t0=$(now)
$DA mailbox status -A messages INBOX >/dev/null
dc_index=$(echo "$(now) - $t0" | bc)

# The text index fills behind the import (find is exact meanwhile, but reads the
# messages not yet indexed); wait for it, as for Dovecot's index build above.
t0=$(now)
text_behind() { $L status --json | python3 -c "import json,sys;print(json.load(sys.stdin)['store']['text_index_behind'])"; }
while [ "$(text_behind)" != 0 ]; do sleep 1; done
lz_text_index=$(echo "$(now) - $t0" | bc)
# Clusters are filed behind the import too (deferred while it runs): wait, then list.
t0=$(now)
clusters_behind() { $L status --json | python3 -c "import json,sys;print(json.load(sys.stdin)['store']['clusters_behind'])"; }
while [ "$(clusters_behind)" != 0 ]; do sleep 1; done
lz_clusters_filed=$(echo "$(now) - $t0" | bc)
lz_clusters=$($T "$L clusters --limit 20 --json")
lz_clusters_growth=$($T "$L clusters --sort growth --limit 20 --json")

# ---------------------------------------------------------------- searches
echo "searching ..." >&2
lz_subject=$($T "$L find --subject '$subject' --ids-only")
dc_subject=$($T "$DA search -A mailbox INBOX subject '$subject'")
lz_body=$($T "$L find --body '$lure' --ids-only")
dc_body=$($T "$DA search -A mailbox INBOX body '$lure'")
lz_sha=$($T "$L find --sha256 $sha --ids-only")
lz_from=$($T "$L find --from $sender --ids-only")
dc_from=$($T "$DA search -A mailbox INBOX from $sender")

# ---------------------------------------------------------------- web console
# The Find page a browser gets (signed in): 50 rows of the same searches, and page 100
# of the attachment search (every worm copy matches it).
admin=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['admin'])" "$work/lz/data/listeners.json")
enc() { python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$1"; }
console=$(python3 "$root/bench/console_time.py" "$admin" "$(cat "$work/lz/data/admin.token")" "$RUNS" \
  "/find?subject=$(enc "$subject")" "/find?body=$(enc "$lure")" "/find?sha256=$sha" \
  "/find?sha256=$sha&page=100" "/")
console_json=$(echo "$console" | python3 -c 'import json,sys;print(json.dumps([json.loads(l) for l in sys.stdin]))')

# ---------------------------------------------------------------- quarantine / expunge
echo "quarantining ..." >&2
t0=$(now)
$L quarantine --sha256 "$sha" --yes >/dev/null
lz_quarantine=$(echo "$(now) - $t0" | bc)
lz_left=$($L find --sha256 "$sha" --ids-only | wc -l)
t0=$(now)
$L find --in quarantine --ids-only | $L quarantine restore - >/dev/null
lz_restore=$(echo "$(now) - $t0" | bc)
lz_back=$($L find --sha256 "$sha" --ids-only | wc -l)

# ---------------------------------------------------------------- rescan
# Imported mail was never scanned: the first rescan reads every message. Then one new
# hash signature that matches nothing (the index lookup alone), then the worm's hash.
echo "rescanning ..." >&2
worm_size=$(field "$facts" worm_size)
t0=$(now)
$L rescan --json > "$work/rescan_all.json"
lz_rescan_all=$(echo "$(now) - $t0" | bc)
echo "$(head -c 64 /dev/urandom | sha256sum | cut -c1-64):$worm_size:Bench.Nothing" > "$work/nothing.hsb"
$L signatures add "$work/nothing.hsb" >/dev/null
t0=$(now)
$L rescan --json > "$work/rescan_nothing.json"
lz_rescan_nothing=$(echo "$(now) - $t0" | bc)
echo "$sha:$worm_size:Bench.Worm" > "$work/worm.hsb"
$L signatures add "$work/worm.hsb" >/dev/null
t0=$(now)
$L rescan --json > "$work/rescan_worm.json"
lz_rescan_worm=$(echo "$(now) - $t0" | bc)
# Destroying what the rescan quarantined: compared per message with postsuper -d below.
lz_purged=$($L find --in quarantine --ids-only | wc -l)
t0=$(now)
$L quarantine purge --older-than 0s --yes >/dev/null
lz_purge=$(echo "$(now) - $t0" | bc)
wait_until reclaimed
lz_purge_reclaimed=$(echo "$(now) - $t0" | bc)
# The queue steps below send worm copies in again: they must not be caught at ingest.
$L signatures remove worm.hsb >/dev/null
$L signatures remove nothing.hsb >/dev/null
t0=$(now)
$DA expunge -A mailbox INBOX body "$lure"
dc_expunge=$(echo "$(now) - $t0" | bc)
dc_left=$($DA search -A mailbox INBOX body "$lure" | wc -l)
lz_rss=$(awk '/VmHWM/{print $2}' /proc/$lz_pid/status)
lz_db=$(du -sb "$work/lz/data/lazaret.db" | cut -f1)

# ---------------------------------------------------------------- queues: Postfix vs Lazaret
echo "filling queues with $QUEUE_WORMS worm copies ..." >&2
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
relayhost = [127.0.0.1]:9
defer_transports = smtp
message_size_limit = 0
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
CFG
postconf -c "$pf/etc" -F '*/*/chroot = n'
postconf -c "$pf/etc" -MX smtp/inet
postconf -c "$pf/etc" -Me "127.0.0.1:$PF_PORT/inet = 127.0.0.1:$PF_PORT inet n - n - - smtpd"
script -qc "postfix -c $pf/etc start" /dev/null
wait_until bash -c "exec 3<>/dev/tcp/127.0.0.1/$PF_PORT" 2>/dev/null
python3 "$root/bench/find_seed.py" --worms "$QUEUE_WORMS" --send-worms "127.0.0.1:$PF_PORT" --rcpt victim@far.test
pf_filled() { [ "$(find "$pf/spool/deferred" -type f | wc -l)" -ge "$QUEUE_WORMS" ]; }
wait_until pf_filled
sleep 2
pf_count=$(postqueue -c "$pf/etc" -j | wc -l)
$L queue freeze local >/dev/null
lz_smtp=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['smtp'][0])" "$work/lz/data/listeners.json")
python3 "$root/bench/find_seed.py" --worms "$QUEUE_WORMS" --send-worms "$lz_smtp" --rcpt user0@localhost
lz_queued() { [ "$($L find --in queues --queue local --ids-only | wc -l)" -ge "$QUEUE_WORMS" ]; }
wait_until lz_queued

# The Postfix way: list the queue, read each message, keep those with the attachment.
pf_find_cmd="python3 $root/bench/postfix_find.py $pf/etc 'filename=\"document_'"
pf_find=$(python3 "$root/bench/timecmd.py" 1 "$pf_find_cmd")
lz_qfind=$($T "$L find --in queues --attachment 'document_*.zip' --ids-only")
eval "$pf_find_cmd" > "$work/pf_ids"
t0=$(now)
postsuper -c "$pf/etc" -d - < "$work/pf_ids" 2>/dev/null
pf_delete=$(echo "$(now) - $t0" | bc)
pf_left=$(postqueue -c "$pf/etc" -j | wc -l)
t0=$(now)
$L delete --no-ndr --in queues --attachment 'document_*.zip' --yes >/dev/null
lz_delete=$(echo "$(now) - $t0" | bc)
wait_until reclaimed
lz_delete_reclaimed=$(echo "$(now) - $t0" | bc)
lz_qleft=$($L find --in queues --ids-only | wc -l)
lz_rss=$(awk '/VmHWM/{print $2}' /proc/$lz_pid/status)

# ---------------------------------------------------------------- report
python3 - <<PY
import json
facts = json.loads('''$facts''')
import os
def result(name, lazaret, peer, ratio):
    # One line per figure for bench/quick.sh: name, Lazaret, peer, ratio (>1: Lazaret better).
    if os.environ.get("BENCH_RESULTS"):
        with open(os.environ["BENCH_RESULTS"], "a") as out:
            out.write(f"{name}\t{lazaret:.4g}\t{peer:.4g}\t{ratio:.3f}\n")
def j(s): return json.loads(s)
n = facts["messages"]
print(f"workload: {facts['users']} mailboxes, {n} messages ({facts['bytes']/1e9:.2f} GB) incl. $WORMS worm copies; queue: $QUEUE_WORMS worm copies")
print(f"import: Lazaret {n/float('$lz_import'):.0f} msgs/s ({float('$lz_import'):.0f} s), text index caught up {float('$lz_text_index'):.0f} s later; Dovecot index build {float('$dc_index'):.0f} s; Lazaret database {int('$lz_db')/1e9:.2f} GB")
print(f"clusters: all filed {float('$lz_clusters_filed'):.0f} s after the text index")
print(f"{'':40}{'Lazaret':>10}{'peer':>10}{'ratio':>9}  matches (Lazaret/peer)")
def row(name, a, b=None):
    a = j(a) if isinstance(a, str) else a
    b = j(b) if isinstance(b, str) else b
    if b is None:
        print(f"{name:40}{a['seconds']:10.3f}{'-':>10}{'':>9}  {a['lines']}")
    else:
        print(f"{name:40}{a['seconds']:10.3f}{b['seconds']:10.3f}{b['seconds']/a['seconds']:8.1f}x  {a['lines']}/{b['lines']}")
        result(name, a["seconds"], b["seconds"], b["seconds"] / a["seconds"])
row("find subject substring (s) vs doveadm", '$lz_subject', '$dc_subject')
row("find body text (s) vs doveadm", '$lz_body', '$dc_body')
row("find attachment SHA-256 (s)", '$lz_sha')
row("find sender (s) vs doveadm", '$lz_from', '$dc_from')
names = ["subject", "body text", "attachment SHA-256", "attachment SHA-256, page 100", "status page"]
peers = {"subject": j('$dc_subject'), "body text": j('$dc_body')}
for name, page in zip(names, json.loads('$console_json')):
    peer = peers.get(name)
    label = f"console: find {name}" if name != "status page" else "console: status page"
    extra = f"  first byte {page['first_byte']*1000:.0f} ms, {page['bytes']/1024:.0f} KB, {page['rows']} rows"
    if peer:
        print(f"{label + ' (s) vs doveadm':40}{page['seconds']:10.3f}{peer['seconds']:10.3f}{peer['seconds']/page['seconds']:8.1f}x{extra}")
        result(f"{label} (s) vs doveadm search", page["seconds"], peer["seconds"], peer["seconds"] / page["seconds"])
    else:
        print(f"{label + ' (s)':40}{page['seconds']:10.3f}{'-':>10}{'':>9}{extra}")
        result(f"{label} (s)", page["seconds"], 0, 0)
row("clusters, biggest 20 (s)", '$lz_clusters')
row("clusters --sort growth, 20 (s)", '$lz_clusters_growth')
q, r, e = float('$lz_quarantine'), float('$lz_restore'), float('$dc_expunge')
print(f"{'quarantine all worms (s) vs expunge':40}{q:10.3f}{e:10.3f}{e/q:8.1f}x  left: $lz_left/$dc_left")
result("quarantine all worms (s) vs doveadm expunge", q, e, e / q)
print(f"{'restore them all (s)':40}{r:10.3f}{'-':>10}{'':>9}  back: $lz_back")
row("queue: find worms (s) vs postqueue+postcat", '$lz_qfind', '$pf_find')
d, pd = float('$lz_delete'), float('$pf_delete')
print(f"{'queue: delete --no-ndr (s) vs postsuper -d':40}{d:10.3f}{pd:10.3f}{pd/d:8.1f}x  left: $lz_qleft/$pf_left")
result("queue delete --no-ndr (s) vs postsuper -d", d, pd, pd / d)
dr = float('$lz_delete_reclaimed')
print(f"{'  the same until reclaimed (s)':40}{dr:10.3f}{pd:10.3f}{pd/dr:8.1f}x")
result("reclaim after queue delete (s) vs postsuper -d", dr, pd, pd / dr)
pu, purged = float('$lz_purge'), int('$lz_purged')
# Per message: the purge destroys what the rescan quarantined, postsuper the queued copies.
print(f"{'quarantine purge (msgs/s) vs postsuper -d':40}{purged/pu:10.0f}{$QUEUE_WORMS/pd:10.0f}{(purged/pu)/($QUEUE_WORMS/pd):8.1f}x  purged {purged}")
result("quarantine purge (msgs/s) vs postsuper -d", purged / pu, $QUEUE_WORMS / pd, (purged / pu) / ($QUEUE_WORMS / pd))
pr = float('$lz_purge_reclaimed')
print(f"{'  the same until reclaimed (msgs/s)':40}{purged/pr:10.0f}{$QUEUE_WORMS/pd:10.0f}{(purged/pr)/($QUEUE_WORMS/pd):8.1f}x")
result("reclaim after purge (msgs/s) vs postsuper -d", purged / pr, $QUEUE_WORMS / pd, (purged / pr) / ($QUEUE_WORMS / pd))
def rescan(f): return json.load(open(f"$work/{f}"))
ra, rn, rw = rescan("rescan_all.json"), rescan("rescan_nothing.json"), rescan("rescan_worm.json")
ta = float('$lz_rescan_all')
print(f"{'rescan, first (reads every message) (s)':40}{ta:10.3f}{'-':>10}{'':>9}  read {ra['messages_scanned']} ({facts['bytes']/1e6/ta:.0f} MB/s)")
print(f"{'rescan, +1 hash signature, no match (s)':40}{float('$lz_rescan_nothing'):10.3f}{'-':>10}{'':>9}  read {rn['messages_scanned']}, found {rn['detected']}")
print(f"{'rescan, +worm hash signature (s)':40}{float('$lz_rescan_worm'):10.3f}{'-':>10}{'':>9}  read {rw['messages_scanned']}, quarantined {rw['quarantined']}")
print(f"Postfix queue held $pf_count messages")
print(f"Lazaret peak RSS: {int('$lz_rss')/1024:.0f} MB")
PY
