#!/usr/bin/env bash
# cohctl end to end: devices (table, JSON, replayed machine), check, query
# (once and --watch), bench (table and --plot).
# test-cohctl.sh COHCTL DATA_DIR WATCH_TARGET
set -euo pipefail
cohctl=$1 data=$2 watch_target=$3
fail() { echo "FAIL: $*"; exit 1; }
passed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }

out=$("$cohctl" --backends host devices --json)
grep -q '"name": "host:node0"' <<<"$out" || fail "devices --json lacks host:node0"
grep -q '"numa_node": 0' <<<"$out" || fail "devices --json lacks node 0"
for cap in alloc migrate query pin-query fork-copy fork-exclude fork-zero; do
  grep -q "\"$cap\"" <<<"$out" || fail "devices --json lacks capability $cap"
done
if command -v python3 >/dev/null; then
  python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["targets"][0]["name"]=="host:node0"' <<<"$out" \
    || fail "devices --json is not valid JSON"
fi
ok "devices --json"

grep -q '^host:node0 ' <<<"$("$cohctl" devices)" || fail "devices table lacks host:node0"
ok "devices table"

out=$("$cohctl" --fsroot "$data/cxl-cpuless" devices --json)
grep -q '"replay": true' <<<"$out" || fail "replay flag"
grep -q '"kind": "cpuless-node"' <<<"$out" || fail "replayed CXL node not cpuless"
grep -q '"memory_tier": 22' <<<"$out" || fail "replayed tier"
grep -q '"read_bandwidth_MBps"' <<<"$out" || fail "replayed HMAT access"
ok "devices on a replayed machine"

# hand-written discovery trees (tests/data/make-numa-trees.py)
js() { python3 -c "import json,sys; d=json.load(sys.stdin); t={x['name']: x for x in d['targets']}; $1" || fail "$2"; }
if command -v python3 >/dev/null; then
  "$cohctl" --fsroot "$data/numa-hmat-zeros" devices --json |
    js 'a=t["host:node0"]["access"][0]; assert a["read_bandwidth_MBps"] is None and a["read_latency_ns"] == 90, a' \
       "HMAT 0 shown as a figure"
  "$cohctl" --fsroot "$data/numa-memcache" devices --json |
    js 'c=t["host:node0"]["memory_side_caches"]; assert c == [{"level": 1, "size_bytes": 103079215104, "line_size": 64, "indexing": "direct-mapped", "write_policy": "write-back"}], c' \
       "memory-side cache"
  "$cohctl" --fsroot "$data/numa-nvdimm" devices --json |
    js 'assert t["host:node2"]["persistent"] is True and t["host:node0"]["persistent"] is False' "NVDIMM node not persistent"
  "$cohctl" --fsroot "$data/numa-impossible" devices --json 2>/dev/null |
    js 'assert t["host:node0"]["total_bytes"] is None and t["host:node0"]["distances"] == {} and t["host:node5"]["distances"]["host:node4"] == 255, t["host:node0"]' \
       "impossible data shown"
  "$cohctl" --fsroot "$data/numa-empty-has-cpu" devices --json |
    js 'assert t["host:node1"]["kind"] == "host-node"' "node with CPUs reported CPU-less"
  # device identity as data (coh_target_device)
  "$cohctl" --backends host devices --json |
    js 'assert t["host:node0"]["device"] == {"memory_model": "node", "gpu_id": None, "uuid": None, "verified_on_hardware": True, "access": "none: the CPU is the only initiator of host memory"}, t["host:node0"]["device"]' \
       "host node identity"
  "$cohctl" --fsroot "$data/kfd-mi210" --backends amd devices --json |
    js 'd=t["amd:gpu1"]["device"]; assert d["memory_model"] == "svm" and d["gpu_id"] == 51238 and d["verified_on_hardware"] is False, d' \
       "AMD gpu_id or status not data"
fi
# tunables: a known key is taken, an unknown one refused
"$cohctl" --backends host --tunables query.pfn=0 devices >/dev/null || fail "--tunables query.pfn=0 refused"
if "$cohctl" --backends host --tunables no.such=1 devices >/dev/null 2>&1; then
  fail "--tunables accepted an unknown key"
fi
ok "device identity and tunables"
# (output into a variable first: grep -q leaving early would make cohctl's
# write fail with SIGPIPE, and pipefail report that)
out=$("$cohctl" --fsroot "$data/numa-memcache" devices)
grep -q 'memory-side cache L1: 96.0 GiB' <<<"$out" || fail "devices table lacks the memory-side cache"
ok "devices on discovery trees"

# a FIFO in the tree must not block (every read is O_NONBLOCK + fstat)
tmp=$(mktemp -d)
tpid=
trap '[ -z "$tpid" ] || kill "$tpid" 2>/dev/null; rm -rf "$tmp"' EXIT
cp -r "$data/numa-sparse-ids" "$tmp/t"
rm "$tmp/t/sys/devices/system/node/node3/meminfo" "$tmp/t/proc/cpuinfo"
mkfifo "$tmp/t/sys/devices/system/node/node3/meminfo" "$tmp/t/proc/cpuinfo"
timeout 20 "$cohctl" --fsroot "$tmp/t" devices >"$tmp/out" 2>&1 || fail "devices on a tree with a FIFO: $(cat "$tmp/out")"
grep -q '^host:node3 .* unknown' "$tmp/out" || fail "node behind a FIFO meminfo not listed as unknown capacity"
timeout 20 "$cohctl" --fsroot "$tmp/t" check >/dev/null || fail "check on a tree with a FIFO"
ok "FIFO in the tree"

# a root that is not a recorded machine: error naming the path and the errno
mkdir "$tmp/empty"
for root in "$tmp/empty" "$data" "$tmp/missing"; do
  if "$cohctl" --fsroot "$root" devices >"$tmp/out" 2>&1; then fail "fsroot $root accepted"; fi
  grep -q "fsroot $root: ENOENT" "$tmp/out" || fail "fsroot $root: error without path and ENOENT: $(cat "$tmp/out")"
  grep -q 'host:node0' "$tmp/out" && fail "fsroot $root invented a machine"
  if "$cohctl" --fsroot "$root" check >"$tmp/out" 2>&1; then fail "check: fsroot $root accepted"; fi
  grep -q "fsroot $root.*ENOENT" "$tmp/out" || fail "check: fsroot $root: error without path and ENOENT: $(cat "$tmp/out")"
done
ok "wrong fsroot"

# check accepts any node (node 0 can be offline)
out=$("$cohctl" --fsroot "$data/numa-sparse-ids" check --json)
grep -q '"what": "NUMA nodes in sysfs", "required": false, "ok": true' <<<"$out" || fail "check: nodes 1, 3, 6 not seen"
ok "check without node 0"

out=$("$cohctl" check --json)
grep -q '"backend": "host", "compiled": true, "status": "ready"' <<<"$out" || fail "check: host not ready"
grep -q '^nvidia' <<<"$("$cohctl" check)" || fail "check table lacks nvidia"
ok "check"

out=$("$cohctl" query 0 0x10000 4096)
grep -q 'unmapped' <<<"$out" || fail "query of an unmapped page"
sleep 30 & pid=$!
out=$("$cohctl" query "$pid" "0x$(awk '/\[stack\]/ {split($1,a,"-"); print a[1]; exit}' /proc/$pid/maps)" 64k --json)
kill $pid
grep -q '"extents"' <<<"$out" || fail "query of another process"
ok "query"

# query --watch on a process that maps PAGES pages, writes the first half
# and prints where (the range is known once it is there), living SECONDS
start_target() {
  rm -f "$tmp/target"   # not to read the last one's range
  "$watch_target" "$1" "$2" >"$tmp/target" &
  tpid=$!
  for _ in $(seq 200); do [ -s "$tmp/target" ] && break; sleep 0.05; done
  read -r taddr tlen <"$tmp/target" || fail "watch-target printed no range"
}
start_target 64 60
out=$(timeout 30 "$cohctl" query "$tpid" "$taddr" "$tlen" --watch --count 3 --interval 50) ||
  fail "query --watch --count 3: $out"
[ "$(grep -c '^--- .* refresh [1-3]/3$' <<<"$out")" = 3 ] || fail "query --watch --count 3: not 3 snapshots: $out"
[ "$(grep -cE "^ +total +64 pages +$tlen bytes$" <<<"$out")" = 3 ] || fail "query --watch: totals are not $tlen: $out"
[ "$(grep -cE '^  \. not present +32 pages ' <<<"$out")" = 3 ] || fail "query --watch: not 32 pages not present: $out"
[ "$(grep -cE '^  map \|[A-Z?]{32}\.{32}\|  1 page per column$' <<<"$out")" = 3 ] || fail "query --watch: map: $out"
if command -v python3 >/dev/null; then
  timeout 30 "$cohctl" query "$tpid" "$taddr" "$tlen" --watch --count 2 --interval 50 --json | python3 -c '
import json, sys
lines = sys.stdin.read().splitlines()
assert len(lines) == 2, lines
for n, l in enumerate(lines, 1):
    d = json.loads(l)
    assert d["refresh"] == n and d["length"] == int(sys.argv[1]) and d["pages"] == 64, d
    present = sum(t["pages"] for t in d["targets"]) + d["unknown"]["pages"]
    assert present == 32 and d["not_present"]["pages"] == 32 and d["unmapped"]["pages"] == 0, d
    assert sum(t["bytes"] for t in d["targets"]) + sum(d[k]["bytes"] for k in ("not_present", "unknown", "unmapped")) == d["length"], d
' "$tlen" || fail "query --watch --json"
fi
# Ctrl-C ends the watch cleanly (status 0, whole snapshots)
timeout --preserve-status -s INT 1 "$cohctl" query "$tpid" "$taddr" "$tlen" --watch --interval 50 >"$tmp/out" ||
  fail "query --watch: SIGINT did not end it with status 0"
grep -q '^  map |' "$tmp/out" || fail "query --watch: nothing before SIGINT"
[ "$(tail -n 1 "$tmp/out" | cut -c1-7)" = "  map |" ] || fail "query --watch: snapshot cut by SIGINT"
# refused: unknown PID, a range with nothing mapped, bad numbers
refused() {
  local want=$1; shift
  if "$cohctl" query "$@" >"$tmp/out" 2>&1; then fail "query $* accepted"; fi
  grep -q "$want" "$tmp/out" || fail "query $*: no message '$want': $(cat "$tmp/out")"
}
true & dead=$!
wait "$dead"
refused 'no process' "$dead" "$taddr" "$tlen" --watch --count 1
refused 'is not mapped' "$tpid" 0x10000 4096 --watch --count 1
refused "bad --interval 'abc'" "$tpid" "$taddr" "$tlen" --watch --interval abc
refused "bad --count '0'" "$tpid" "$taddr" "$tlen" --watch --count 0
refused "bad length '12q'" "$tpid" "$taddr" 12q --watch
refused "bad PID '-1'" -1 "$taddr" "$tlen" --watch
refused 'go with --watch' "$tpid" "$taddr" "$tlen" --count 2
kill "$tpid"
wait "$tpid" 2>/dev/null || true
# the watch ends, saying so, when the process exits
start_target 4 1
out=$(timeout 30 "$cohctl" query "$tpid" "$taddr" "$tlen" --watch --interval 50) || fail "query --watch on an exiting process: $out"
tail -n 1 <<<"$out" | grep -q "^--- .* pid $tpid exited after [0-9]* refreshes$" || fail "query --watch: exit not said: $out"
tpid=
ok "query --watch"

out=$("$cohctl" bench --quick pool 2>/dev/null)
grep -q 'alloc+free 64 B, 1 thread: coh_pool vs glibc malloc' <<<"$out" || fail "bench pool: no pool row"
"$cohctl" bench nosuchsuite 2>/dev/null && fail "bench of an unknown suite accepted"
ok "bench pool"

# --plot: an SVG an XML parser takes, with every row of the run in it
"$cohctl" bench --quick --markdown lookup --plot "$tmp/b.svg" >"$tmp/table" 2>/dev/null || fail "bench --plot"
if command -v python3 >/dev/null; then
  python3 -c '
import sys, xml.dom.minidom
d = xml.dom.minidom.parse(sys.argv[1])
texts = [" ".join(n.data for n in t.childNodes if n.nodeType == n.TEXT_NODE).strip() for t in d.getElementsByTagName("text")]
rows = [l.split("|")[2].strip() for l in open(sys.argv[2]) if l.startswith("| lookup |")]
assert len(rows) >= 2, rows
missing = [r for r in rows if r not in texts]
assert not missing, missing
assert any(t.startswith("machine: ") for t in texts) and any("lookup" in t for t in texts), texts[:4]
' "$tmp/b.svg" "$tmp/table" || fail "bench --plot: SVG not valid or rows missing"
else
  grep -q '^<svg ' "$tmp/b.svg" || fail "bench --plot wrote no SVG"
fi
if "$cohctl" bench --quick lookup --plot "$tmp/b.png" >/dev/null 2>"$tmp/out"; then fail "bench --plot FILE.png accepted"; fi
grep -q 'SVG only' "$tmp/out" || fail "bench --plot FILE.png: no message: $(cat "$tmp/out")"
[ ! -e "$tmp/b.png" ] || fail "bench --plot FILE.png wrote a file"
ok "bench --plot"

"$cohctl" bogus 2>/dev/null && fail "unknown command accepted"
ok "usage errors"
echo "$passed passed, 0 failed"
