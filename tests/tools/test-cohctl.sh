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

"$cohctl" devices | grep -q '^host:node0 ' || fail "devices table lacks host:node0"
ok "devices table"

out=$("$cohctl" --fsroot "$data/cxl-cpuless" devices --json)
grep -q '"replay": true' <<<"$out" || fail "replay flag"
grep -q '"kind": "cpuless-node"' <<<"$out" || fail "replayed CXL node not cpuless"
grep -q '"memory_tier": 22' <<<"$out" || fail "replayed tier"
grep -q '"read_bandwidth_MBps"' <<<"$out" || fail "replayed HMAT access"
ok "devices on a replayed machine"

out=$("$cohctl" check --json)
grep -q '"backend": "host", "compiled": true, "status": "ready"' <<<"$out" || fail "check: host not ready"
"$cohctl" check | grep -q '^nvidia' || fail "check table lacks nvidia"
ok "check"

out=$("$cohctl" query 0 0x10000 4096)
grep -q 'unmapped' <<<"$out" || fail "query of an unmapped page"
sleep 30 & pid=$!
out=$("$cohctl" query "$pid" "0x$(awk '/\[stack\]/ {split($1,a,"-"); print a[1]; exit}' /proc/$pid/maps)" 64k --json)
kill $pid
grep -q '"extents"' <<<"$out" || fail "query of another process"
ok "query"

"$cohctl" bogus 2>/dev/null && fail "unknown command accepted"
ok "usage errors"
echo "$passed passed, 0 failed"
