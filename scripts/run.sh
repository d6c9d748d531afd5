#!/usr/bin/env bash
# The main job: set up, build, then show what libcoherent sees on this machine
# and run the quickstart example on the host backend.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
echo "== cohctl devices"
build/tools/cohctl devices
echo "== cohctl check"
build/tools/cohctl check
echo "== examples/quickstart"
build/examples/quickstart
echo "== examples/residency"
build/examples/residency
