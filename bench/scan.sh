#!/usr/bin/env bash
# Scan benchmark, side by side in one run: the same signature files (HASHES MD5 hash
# signatures, BODIES wildcard body patterns; bench/scan_seed.py) over the same corpus
# of MB megabytes (binaries, text, zips, mail with base64 attachments, and the containers
# and encodings of bench/scan_seed.py, each kind also timed alone), by
#   clamscan -d SIGS -r CORPUS            (one process, one thread)
#   clamdscan --multiscan CORPUS          (clamd loaded with SIGS)
#   lazaret scan -d SIGS CORPUS           (one thread per core, and --threads 1)
# Prints signature load time, throughput (MB/s), infected files found by each, and the
# ratios. Needs: clamav, clamav-daemon (clamd, clamdscan), python3.
#   bench/scan.sh                         # MB=1000 HASHES=100000 BODIES=5000
set -euo pipefail
MB=${MB:-1000}
HASHES=${HASHES:-100000}
BODIES=${BODIES:-5000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lazaret-scanbench.XXXXXX)
LZ=$root/target/release/lazaret
cleanup() {
  [ -n "${clamd_pid:-}" ] && kill "$clamd_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
(cd "$root" && cargo build --release -q -p lazaret)
now() { date +%s.%N; }
secs() { echo "$(now) - $1" | bc; }

echo "writing $MB MB corpus and $HASHES + $BODIES signatures ..." >&2
facts=$(python3 "$root/bench/scan_seed.py" --out "$work" --mb "$MB" --hashes "$HASHES" --bodies "$BODIES")
: > "$work/empty"
sync

# Signature load: scanning an empty file is all load.
t0=$(now); clamscan --no-summary -d "$work/sigs" "$work/empty" >/dev/null; cs_load=$(secs "$t0")
t0=$(now); "$LZ" scan --no-summary -d "$work/sigs" "$work/empty" >/dev/null; lz_load=$(secs "$t0")

# Warm the page cache once so all three read from memory.
find "$work/corpus" -type f -exec cat {} + > /dev/null

t0=$(now)
clamscan --no-summary --infected -r -d "$work/sigs" "$work/corpus" > "$work/cs.out" || [ $? -eq 1 ]
cs_time=$(secs "$t0")
t0=$(now)
"$LZ" scan --no-summary --infected -d "$work/sigs" "$work/corpus" > "$work/lz.out" || [ $? -eq 1 ]
lz_time=$(secs "$t0")
t0=$(now)
"$LZ" scan --threads 1 --no-summary --infected -d "$work/sigs" "$work/corpus" > "$work/lz1.out" || [ $? -eq 1 ]
lz1_time=$(secs "$t0")

# Per format: each kind's directory alone, both scanners, signature load taken off.
: > "$work/kinds.tsv"
for dir in "$work"/corpus/*/; do
  kind=$(basename "$dir")
  bytes=$(du -sb "$dir" | cut -f1)
  t0=$(now); clamscan --no-summary --infected -r -d "$work/sigs" "$dir" > "$work/cs-$kind.out" || [ $? -eq 1 ]; k_cs=$(secs "$t0")
  t0=$(now); "$LZ" scan --no-summary --infected -d "$work/sigs" "$dir" > "$work/lz-$kind.out" || [ $? -eq 1 ]; k_lz=$(secs "$t0")
  printf '%s\t%s\t%s\t%s\n' "$kind" "$bytes" "$k_cs" "$k_lz" >> "$work/kinds.tsv"
done

cat > "$work/clamd.conf" <<CFG
LocalSocket $work/clamd.ctl
DatabaseDirectory $work/sigs
Foreground yes
PidFile $work/clamd.pid
TemporaryDirectory $work
LogFile $work/clamd.log
MaxThreads $(nproc)
CFG
t0=$(now)
clamd -c "$work/clamd.conf" >"$work/clamd.out" 2>&1 & clamd_pid=$!
for _ in $(seq 1 600); do [ -S "$work/clamd.ctl" ] && break; sleep 0.1; done
clamd_load=$(secs "$t0")
cat > "$work/clamdscan.conf" <<CFG
LocalSocket $work/clamd.ctl
CFG
t0=$(now)
clamdscan -c "$work/clamdscan.conf" --multiscan --no-summary --infected "$work/corpus" > "$work/cd.out" || [ $? -eq 1 ]
cd_time=$(secs "$t0")

python3 - "$work" <<PY
import json, sys
work = sys.argv[1]
facts = json.loads('''$facts''')
mb = facts["bytes"] / 1e6
def infected(f):
    return {l.rsplit(": ", 1)[0] for l in open(f"{work}/{f}") if l.rstrip().endswith("FOUND")}
cs, lz, cd = infected("cs.out"), infected("lz.out"), infected("cd.out")
lz1 = infected("lz1.out")
import os
def result(name, lazaret, peer, ratio):
    # One line per figure for bench/quick.sh: name, Lazaret, peer, ratio (>1: Lazaret better).
    if os.environ.get("BENCH_RESULTS"):
        with open(os.environ["BENCH_RESULTS"], "a") as out:
            out.write(f"{name}\t{lazaret:.4g}\t{peer:.4g}\t{ratio:.3f}\n")
t = {"cs": float("$cs_time"), "lz": float("$lz_time"), "cd": float("$cd_time"), "lz1": float("$lz1_time")}
print(f"workload: {facts['files']} files, {mb:.0f} MB, {facts['planted']} planted; {facts['hash_signatures']} hash + {facts['body_signatures']} body signatures")
print(f"signature load (s): lazaret {float('$lz_load'):.2f}, clamscan {float('$cs_load'):.2f} ({float('$cs_load')/float('$lz_load'):.1f}x), clamd start {float('$clamd_load'):.2f}")
print(f"scan throughput (MB/s): lazaret {mb/t['lz']:.1f}, lazaret --threads 1 {mb/t['lz1']:.1f}, clamscan {mb/t['cs']:.1f}, clamdscan --multiscan {mb/t['cd']:.1f}")
print(f"ratio lazaret/clamscan {t['cs']/t['lz']:.2f}x, lazaret --threads 1/clamscan {t['cs']/t['lz1']:.2f}x, lazaret/clamdscan {t['cd']/t['lz']:.2f}x")
planted = {l.strip() for l in open(f"{work}/planted.txt") if l.strip()}
false_positives = (lz | lz1) - planted
covers = cs <= lz and lz == lz1
print(f"infected files: lazaret {len(lz)} (--threads 1: {len(lz1)}), clamscan {len(cs)}, clamdscan {len(cd)}; "
      f"of {len(planted)} planted; same as clamscan: {lz == cs == lz1}")
print(f"lazaret finds every file clamscan finds: {covers}; lazaret false positives: {len(false_positives)}; "
      f"clamscan false positives: {len(cs - planted)}")
result("scan throughput (MB/s) vs clamscan", mb / t["lz"], mb / t["cs"], t["cs"] / t["lz"])
result("scan signature load (s) vs clamscan", float("$lz_load"), float("$cs_load"), float("$cs_load") / float("$lz_load"))
# ClamAV misses some planted files Lazaret reads (e.g. uuencode after other text, a
# TNEF's last attachment): the guard is every clamscan find and no false positive.
ok = covers and not false_positives
result("scan finds all clamscan finds, no false positives (1=yes)", float(ok), 1, float(ok))
if lz != cs:
    print("only lazaret:", sorted(lz - cs)[:5], "only clamscan:", sorted(cs - lz)[:5])
print("per format (MB/s, signature load taken off; infected files):")
cs_load, lz_load = float("$cs_load"), float("$lz_load")
for line in open(f"{work}/kinds.tsv"):
    kind, size, k_cs, k_lz = line.split("\t")
    kmb = int(size) / 1e6
    k_cs, k_lz = max(float(k_cs) - cs_load, 1e-3), max(float(k_lz) - lz_load, 1e-3)
    same = infected(f"cs-{kind}.out") == infected(f"lz-{kind}.out")
    extra = "" if same else "  only lazaret: " + " ".join(sorted(os.path.basename(p) for p in infected(f"lz-{kind}.out") - infected(f"cs-{kind}.out")))
    print(f"  {kind:5} {kmb:7.1f} MB  lazaret {kmb / k_lz:7.1f}  clamscan {kmb / k_cs:7.1f}  "
          f"ratio {k_cs / k_lz:5.2f}x  found {len(infected(f'lz-{kind}.out'))}/{len(infected(f'cs-{kind}.out'))}"
          f"{extra}")
PY
