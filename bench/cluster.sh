#!/usr/bin/env bash
# Cluster benchmark (issue #21, docs/SCALE-OUT.md): Lazaret on PostgreSQL + an S3
# service against one node on the embedded store, in one run on one machine.
#  1. Ingest: SESSIONS sessions send MESSAGES messages to USERS local users, spread over
#     1, 2 and 3 nodes sharing one database and bucket, and to one embedded node.
#     All the nodes run on this one machine, with the database and the S3 service
#     (moto, a Python test peer, or s3s-fs), so the figures show what sharing costs, not how a
#     cluster of machines scales. Accepted msgs/s (closed loop) and the time until
#     every message is in its mailbox.
#  2. Find and quarantine: FIND_USERS x FIND_PER_USER messages plus WORMS worm copies
#     (bench/find_seed.py, imported), on one PostgreSQL node, on the embedded node, and
#     on the embedded node with its bodies in the same S3 service (what the database
#     costs when both write every body to the same service): find by subject, sender
#     and attachment SHA-256, quarantine every copy, restore every copy, and `status`.
#     Each node's files and bucket go once its figures are taken (at a million
#     messages each holds 14 GB). S3_PEER=0 leaves out the embedded node with bodies
#     in S3: at a million its text index, which reads every body back from the
#     bucket, had not caught up 47 minutes after that node's import began.
#  3. Delivery resumption: a node holding outbound claims is SIGKILLed; the time until
#     the first of its items is delivered by another node (the lease, a minute, plus a
#     look), through an smtp-sink that answers DATA after a second (and is then one
#     message a second in all, so only the resumption is timed, not the draining).
#     Goal: within the lease + 60 s. Then the same with the killed node started again
#     5 s later: it gives its claims back as it starts.
# Every figure goes to BENCH_RESULTS (bench/quick.sh's table) when that is set.
#
# Needs: Debian's postgresql, PyPI moto[server], postfix (smtp-sink), python3, bc.
#   bench/cluster.sh                # SESSIONS=30 MESSAGES=6000 FIND_USERS=20 FIND_PER_USER=5000 WORMS=5000
#   PARTS="find resume" bench/cluster.sh   # some of the three
# For find/quarantine on a million messages, a faster S3 service than moto:
#   cargo install s3s-fs@0.14.1 --locked --features binary --root /opt/s3s   # 90 s here
#   S3S_FS=/opt/s3s/bin/s3s-fs S3_PEER=0 PARTS=find FIND_USERS=1000 FIND_PER_USER=1000 WORMS=50000 bench/cluster.sh
set -euo pipefail
SESSIONS=${SESSIONS:-30}
MESSAGES=${MESSAGES:-6000}
SIZE=${SIZE:-10240}
USERS=${USERS:-10}
FIND_USERS=${FIND_USERS:-20}
FIND_PER_USER=${FIND_PER_USER:-5000}
WORMS=${WORMS:-5000}
OUTBOUND=${OUTBOUND:-400}
PARTS=${PARTS:-ingest find resume}   # which of the three to run
S3_PEER=${S3_PEER:-1}   # 0: no embedded node with bodies in S3 in the find part
# The S3 service: moto unless S3S_FS names an s3s-fs binary (objects as files); moto
# keeps every object in one Python process and slows to ~150 PUTs/s past 50,000.
S3S_FS=${S3S_FS:-}

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lazaret-cluster.XXXXXX)
chmod 755 "$work"
LZ=${LAZARET_BIN:-$root/target/release/lazaret}
LOAD="python3 $root/bench/smtp_load.py"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${sink_pid:-}" ] && kill "$sink_pid" 2>/dev/null || true
  [ -n "${s3_pid:-}" ] && kill "$s3_pid" 2>/dev/null || true
  "$root/scripts/postgres-throwaway" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${LAZARET_BIN:-}" ] || (cd "$root" && cargo build --release -q -p lazaret)
wait_until() { for _ in $(seq 1 6000); do "$@" && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
field() { python3 -c "import json,sys;print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
report() { # report NAME LAZARET PEER RATIO: a line here and a row for bench/quick.sh
  printf '%-44s %12s %12s %8s\n' "$1" "$2" "$3" "$4"
  [ -z "${BENCH_RESULTS:-}" ] || printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$BENCH_RESULTS"
}

# ---------------------------------------------------------------- shared services
mkdir -p "$work/pg"
pg=$("$root/scripts/postgres-throwaway" start "$work/pg")
s3_port=$(free_port)
if [ -n "$S3S_FS" ]; then
  mkdir -p "$work/s3"
  "$S3S_FS" --host 127.0.0.1 --port "$s3_port" --access-key bench --secret-key bench "$work/s3" >"$work/s3.log" 2>&1 &
else
  moto_server -H 127.0.0.1 -p "$s3_port" >"$work/s3.log" 2>&1 &
fi
s3_pid=$!
wait_until curl -s -o /dev/null "http://127.0.0.1:$s3_port/"
printf 'access_key_id = "bench"\nsecret_access_key = "bench"\n' >"$work/s3.toml"
chmod 600 "$work/s3.toml"
new_bucket() { # signed, with the (empty) body's digest, as s3s-fs wants it; moto takes it too
  curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user bench:bench -X PUT \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "http://127.0.0.1:$s3_port/$1" >/dev/null
}
new_database() { # new_database NAME -> its URL, with a bucket of the same name
  psql -q "$pg" -c "CREATE DATABASE $1" >/dev/null
  new_bucket "$1"
  echo "${pg%/*}/$1"
}

# start_node DIR [DB NODE [EXTRA]]: a node on the embedded store (no DB; DB "s3:NAME":
# its bodies in bucket NAME) or on the shared database DB and its bucket; its pid in pids[], its SMTP address in DIR/smtp.
start_node() {
  local dir=$1 db=${2:-} name=${3:-} extra=${4:-} store=
  mkdir -p "$dir"
  if [ "${db%%:*}" = s3 ]; then # the embedded store with its bodies in bucket ${db#s3:}
    new_bucket "${db#s3:}"
    store=$(printf '[store]\nblobs = "s3"\nbucket = "%s"\nendpoint = "http://127.0.0.1:%s"\ncredentials_file = "%s"\n' \
      "${db#s3:}" "$s3_port" "$work/s3.toml")
  elif [ -n "$db" ]; then
    store=$(printf '[store]\nbackend = "postgres"\nurl = "%s"\nnode = "%s"\nblobs = "s3"\nbucket = "%s"\nendpoint = "http://127.0.0.1:%s"\ncredentials_file = "%s"\n' \
      "$db" "$name" "${db##*/}" "$s3_port" "$work/s3.toml")
  fi
  cat >"$dir/lazaret.toml" <<CFG
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
[limits.submission]
messages = []
recipients = []
$extra
$store
CFG
  rm -f "$dir/data/listeners.json"
  "$LZ" serve -c "$dir/lazaret.toml" >>"$dir/out" 2>>"$dir/err" &
  pids+=($!)
  echo $! >"$dir/pid"
  wait_until test -f "$dir/data/listeners.json"
  python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['smtp'][0])" "$dir/data/listeners.json" >"$dir/smtp"
  python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['submission'][0])" "$dir/data/listeners.json" >"$dir/submission"
}
drop_store() { # drop_store DIR [BUCKET]: a stopped node's files, and its bucket on s3s-fs
  rm -rf "$1/data"
  [ -z "${2:-}" ] || [ -z "$S3S_FS" ] || rm -rf "${work:?}/s3/$2"
}
stop_node() { kill "$(cat "$1/pid")" 2>/dev/null || true; wait "$(cat "$1/pid")" 2>/dev/null || true; }
in_mailboxes() { # in_mailboxes DIR N: at least N messages in mailboxes (cluster-wide)
  "$LZ" -c "$1/lazaret.toml" status --json |
    python3 -c "import json,sys;sys.exit(0 if json.load(sys.stdin)['store']['in_mailboxes']>=int(sys.argv[1]) else 1)" "$2"
}
add_users() { # add_users DIR COUNT
  seq 1 "$2" | xargs -P 2 -I{} sh -c "echo pw | $LZ -c $1/lazaret.toml user add user{}@localhost --password-stdin >/dev/null"
}
recipients=$(seq 1 "$USERS" | sed 's/.*/user&@localhost/' | paste -sd,)

# ---------------------------------------------------------------- 1. ingest
# ingest NODES DIR...: the load split evenly over the nodes' SMTP ports at once; sets
# rate (msgs/s over all) and all_in (s until every message is in its mailbox).
ingest() {
  local n=$1 per=$((MESSAGES / $1)) s=$((SESSIONS / $1)) t0 d slowest=0 out loads=(); shift
  t0=$(now)
  for d in "$@"; do
    $LOAD "$(cat "$d/smtp")" --sessions "$s" --messages "$per" --size "$SIZE" --to "$recipients" >"$d/load.json" &
    loads+=($!)
  done
  wait "${loads[@]}"
  for d in "$@"; do
    out=$(cat "$d/load.json")
    [ "$(field "$out" failed)" = 0 ] || { echo "ingest: $(field "$out" failed) refused on $d" >&2; exit 1; }
    slowest=$(echo "if ($(field "$out" seconds) > $slowest) $(field "$out" seconds) else $slowest" | bc)
  done
  rate=$(echo "scale=1; $per * $n / $slowest" | bc)
  wait_until in_mailboxes "$1" "$((per * n + ${already:-0}))"
  all_in=$(since "$t0")
}

if [[ " $PARTS " == *" ingest "* ]]; then
echo "ingest: one embedded node ..." >&2
start_node "$work/emb"
add_users "$work/emb" "$USERS"
already=0; MESSAGES_SAVED=$MESSAGES; MESSAGES=$((SESSIONS * 20)); ingest 1 "$work/emb"  # warm-up
already=$((SESSIONS * 20)); MESSAGES=$MESSAGES_SAVED; ingest 1 "$work/emb"
emb_rate=$rate; emb_all=$all_in
stop_node "$work/emb"
# The same embedded node with its bodies on moto: how much of the PostgreSQL figures
# is the S3 service's (a request per message to a Python server).
echo "ingest: one embedded node, bodies on S3 ..." >&2
start_node "$work/emb-s3" s3:embs3
add_users "$work/emb-s3" "$USERS"
already=0; MESSAGES=$((SESSIONS * 20)); ingest 1 "$work/emb-s3"
already=$((SESSIONS * 20)); MESSAGES=$MESSAGES_SAVED; ingest 1 "$work/emb-s3"
embs3_rate=$rate; embs3_all=$all_in
stop_node "$work/emb-s3"

declare -A pg_rate pg_all
for n in 1 2 3; do
  echo "ingest: $n node(s) on PostgreSQL + S3 ..." >&2
  db=$(new_database "ingest$n")
  dirs=()
  for i in $(seq 1 "$n"); do start_node "$work/ingest$n-mx$i" "$db" "mx$i"; dirs+=("$work/ingest$n-mx$i"); done
  add_users "${dirs[0]}" "$USERS"
  already=0; MESSAGES=$((SESSIONS * 20)); ingest "$n" "${dirs[@]}"
  already=$((SESSIONS * 20 / n * n)); MESSAGES=$MESSAGES_SAVED; ingest "$n" "${dirs[@]}"
  pg_rate[$n]=$rate; pg_all[$n]=$all_in
  for d in "${dirs[@]}"; do stop_node "$d"; done
done
report "cluster ingest embedded+s3 msgs/s (vs embedded)" "$embs3_rate" "$emb_rate" "$(echo "scale=2; $embs3_rate / $emb_rate" | bc)"
report "cluster ingest embedded+s3 all in mailboxes s" "$embs3_all" "$emb_all" "$(echo "scale=2; $emb_all / $embs3_all" | bc)"
for n in 1 2 3; do
  report "cluster ingest $n pg node(s) msgs/s (vs embedded)" "${pg_rate[$n]}" "$emb_rate" "$(echo "scale=2; ${pg_rate[$n]} / $emb_rate" | bc)"
  report "cluster ingest $n pg node(s) all in mailboxes s" "${pg_all[$n]}" "$emb_all" "$(echo "scale=2; $emb_all / ${pg_all[$n]}" | bc)"
done

fi

# ---------------------------------------------------------------- 2. find / quarantine
if [[ " $PARTS " == *" find "* ]]; then
echo "find: seeding $FIND_USERS x $FIND_PER_USER + $WORMS worm copies ..." >&2
facts=$(python3 "$root/bench/find_seed.py" --users "$FIND_USERS" --per-user "$FIND_PER_USER" --worms "$WORMS" --out "$work/seed")
sha=$(field "$facts" worm_sha256); subject=$(field "$facts" subject); sender=$(field "$facts" sender)
# find_and_quarantine NAME DIR: import the seed, then the searches and the quarantine;
# sets NAME_import NAME_subject NAME_from NAME_sha NAME_quarantine (seconds).
find_and_quarantine() {
  local name=$1 dir=$2 L="$LZ -c $2/lazaret.toml" t0
  seq 0 $((FIND_USERS - 1)) | xargs -P 2 -I{} sh -c "echo pw | $L user add user{}@localhost --password-stdin >/dev/null"
  t0=$(now)
  seq 0 $((FIND_USERS - 1)) | xargs -P 2 -I{} $L import --user user{}@localhost "$work/seed/mbox/user{}.mbox" >/dev/null
  printf -v "${name}_import" '%s' "$(since "$t0")"
  # The embedded store's text index fills behind the import; wait for it (PostgreSQL
  # indexes in the import's own transactions).
  while [ "$($L status --json | python3 -c "import json,sys;print(json.load(sys.stdin)['store'].get('text_index_behind', 0))")" != 0 ]; do sleep 1; done
  t0=$(now); $L find --subject "$subject" --ids-only >"$work/$name.subject"; printf -v "${name}_subject" '%s' "$(since "$t0")"
  t0=$(now); $L find --from "$sender" --ids-only >"$work/$name.from"; printf -v "${name}_from" '%s' "$(since "$t0")"
  t0=$(now); $L find --sha256 "$sha" --ids-only >"$work/$name.sha"; printf -v "${name}_sha" '%s' "$(since "$t0")"
  [ "$(wc -l <"$work/$name.sha")" = "$WORMS" ] || { echo "$name found $(wc -l <"$work/$name.sha") of $WORMS copies" >&2; exit 1; }
  t0=$(now); $L quarantine --sha256 "$sha" --yes >/dev/null; printf -v "${name}_quarantine" '%s' "$(since "$t0")"
  [ "$($L find --sha256 "$sha" --in mailboxes --ids-only | wc -l)" = 0 ] || { echo "$name: copies left after quarantine" >&2; exit 1; }
  # "Move, don't delete": every copy back where it was.
  $L find --sha256 "$sha" --in quarantine --ids-only >"$work/$name.quarantined"
  t0=$(now); $L quarantine restore - <"$work/$name.quarantined" >/dev/null; printf -v "${name}_restore" '%s' "$(since "$t0")"
  [ "$($L find --sha256 "$sha" --in mailboxes --ids-only | wc -l)" = "$WORMS" ] || { echo "$name: copies missing after restore" >&2; exit 1; }
  t0=$(now); $L status --json >/dev/null; printf -v "${name}_status" '%s' "$(since "$t0")"
}
start_node "$work/find-emb"
find_and_quarantine emb "$work/find-emb"
stop_node "$work/find-emb"; drop_store "$work/find-emb"
# The embedded store with its bodies in the same S3 service: what the database costs
# once both write every body to the same bucket service on the same cores.
if [ "$S3_PEER" != 0 ]; then
  start_node "$work/find-emb-s3" "s3:findembs3"
  find_and_quarantine embs3 "$work/find-emb-s3"
  stop_node "$work/find-emb-s3"; drop_store "$work/find-emb-s3" findembs3
fi
start_node "$work/find-pg" "$(new_database find)" mx1
find_and_quarantine pgf "$work/find-pg"
stop_node "$work/find-pg"; drop_store "$work/find-pg" find
total=$((FIND_USERS * FIND_PER_USER + WORMS))
for what in import subject from sha quarantine restore status; do
  lz=$(eval echo "\$pgf_$what"); peer=$(eval echo "\$emb_$what")
  report "cluster $what $total msgs pg s (vs embedded)" "$lz" "$peer" "$(echo "scale=2; $peer / $lz" | bc)"
done
for what in import quarantine restore; do
  [ "$S3_PEER" != 0 ] || break
  lz=$(eval echo "\$pgf_$what"); peer=$(eval echo "\$embs3_$what")
  report "cluster $what $total msgs pg s (vs embedded+S3)" "$lz" "$peer" "$(echo "scale=2; $peer / $lz" | bc)"
done

fi

# ---------------------------------------------------------------- 3. resumption
if [[ " $PARTS " == *" resume "* ]]; then
# smtp-sink answers each DATA after a second, so the first node still holds most of
# its claims when it is killed.
sink_port=$(free_port)
sink_up() { (echo >"/dev/tcp/127.0.0.1/$sink_port") 2>/dev/null; }
smtp-sink $([ "$(id -u)" = 0 ] && echo -u nobody) -w 1 "127.0.0.1:$sink_port" 1000 >/dev/null 2>&1 &
sink_pid=$!
wait_until sink_up
relay=$(printf '[[connector]]\nname = "relay"\ndomains = ["*"]\nsmarthost = "127.0.0.1:%s"\n[delivery]\npoll_interval = "1s"\n' "$sink_port")
sql() { psql -qAt "$db" -c "$1"; }
claims_of_mx1() { sql "SELECT count(*) FROM queue_items WHERE lease_owner='mx1'"; }
at_least_claimed() { [ "$(claims_of_mx1)" -ge "$1" ]; }
held_left() { sql "SELECT count(*) FROM queue_items WHERE id IN ($held)"; }
held_left_below() { [ "$(held_left)" -lt "$1" ]; }
# resume NAME RESTART: mx1 takes the queue's items, mx2 joins, mx1 is SIGKILLed (and
# with RESTART=1 started again 5 s later). Sets NAME_claimed (the items mx1 held),
# NAME_first (s from the kill until the first of them is delivered: delivery
# resumed), after which it waits until all of them are.
resume() {
  local name=$1 restart=$2 t0 claimed
  db=$(new_database "resume_$name")
  start_node "$work/$name-mx1" "$db" mx1 "$relay"
  echo pw | "$LZ" -c "$work/$name-mx1/lazaret.toml" user add alice@localhost --password-stdin >/dev/null
  $LOAD "$(cat "$work/$name-mx1/submission")" --auth alice@localhost:pw --from alice@localhost \
    --sessions 10 --messages "$OUTBOUND" --size 2048 --to "$(seq 1 50 | sed 's/.*/r&@far.test/' | paste -sd,)" >/dev/null
  wait_until at_least_claimed $((OUTBOUND / 2))
  start_node "$work/$name-mx2" "$db" mx2 "$relay"
  held=$(sql "SELECT string_agg(id::text, ',') FROM queue_items WHERE lease_owner='mx1'")
  claimed=$(held_left)
  kill -9 "$(cat "$work/$name-mx1/pid")"; t0=$(now)
  wait "$(cat "$work/$name-mx1/pid")" 2>/dev/null || true
  if [ "$restart" = 1 ]; then sleep 5; start_node "$work/$name-mx1" "$db" mx1 "$relay"; fi
  wait_until held_left_below "$claimed"
  printf -v "${name}_first" '%s' "$(since "$t0")"
  wait_until held_left_below 1   # every one delivered: none lost
  printf -v "${name}_claimed" '%s' "$claimed"
  stop_node "$work/$name-mx2"; stop_node "$work/$name-mx1"
}
echo "resumption: a node killed with outbound claims ..." >&2
resume dead 0
resume back 1
# The goal is absolute (no peer shares a queue between nodes): the lease (60 s) + 60 s.
report "cluster resume: dead node's $dead_claimed items, first out s" "$dead_first" 120 "$(echo "scale=2; 120 / $dead_first" | bc)"
report "cluster resume: node back in 5 s, $back_claimed items, first out s" "$back_first" 120 "$(echo "scale=2; 120 / $back_first" | bc)"
fi
