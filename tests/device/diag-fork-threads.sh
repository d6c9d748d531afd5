#!/bin/bash
# Device diagnostic: runs the conformance suite on the GPU several times and,
# when a run hangs, prints where each of its threads and children waits.
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
b=build-device
[ -x $b/tests/conformance/coh-conformance ] || bash tests/device/nvidia.sh >/dev/null 2>&1 || true
for i in $(seq 1 ${1:-8}); do
	COH_BACKENDS=${COH_BACKENDS:-nvidia,host} $b/tests/conformance/coh-conformance > /tmp/conf.$i 2>&1 &
	pid=$!
	for s in $(seq 1 40); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done
	if kill -0 $pid 2>/dev/null; then
		echo "== run $i hung; last lines:"; tail -3 /tmp/conf.$i
		for p in $(pgrep -f coh-conformance); do
			echo "-- pid $p ppid $(awk '{print $4}' /proc/$p/stat) state $(awk '{print $3}' /proc/$p/stat)"
			for t in /proc/$p/task/*; do
				echo "   tid ${t##*/} $(cat $t/wchan 2>/dev/null) $(awk '{print $3}' $t/stat)"
				cat $t/stack 2>/dev/null | head -12 | sed 's/^/      /'
			done
		done
		pkill -9 -f coh-conformance; wait $pid 2>/dev/null
	else
		wait $pid; echo "== run $i: $(tail -1 /tmp/conf.$i)"; grep FAIL /tmp/conf.$i
	fi
done
