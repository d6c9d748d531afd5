#!/usr/bin/env bash
# cohctl end to end: devices (table, JSON, replayed machine), check, query, bench.
set -euo pipefail
cohctl=$1 data=$2
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
trap 'rm -rf "$tmp"' EXIT
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

out=$("$cohctl" bench --quick pool 2>/dev/null)
grep -q 'alloc+free 64 B, 1 thread: coh_pool vs glibc malloc' <<<"$out" || fail "bench pool: no pool row"
"$cohctl" bench nosuchsuite 2>/dev/null && fail "bench of an unknown suite accepted"
ok "bench pool"

"$cohctl" bogus 2>/dev/null && fail "unknown command accepted"
ok "usage errors"
echo "$passed passed, 0 failed"
