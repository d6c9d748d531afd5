#!/usr/bin/env bash
# The test command: builds with -Werror and runs every test through ctest.
#   scripts/test.sh                 normal build in build/
#   COH_SANITIZE=address,undefined scripts/test.sh   sanitizer build in build-address,undefined/
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
san=${COH_SANITIZE:-}
dir=${COH_BUILD_DIR:-build${san:+-${san//,/-}}}
type=RelWithDebInfo
[[ -n $san ]] && type=Debug
cmake -S . -B "$dir" -DCOH_WERROR=ON -DCOH_SANITIZE="$san" -DCMAKE_BUILD_TYPE=$type >/dev/null
cmake --build "$dir" -j"$(nproc)"
cd "$dir"
ctest --output-on-failure --timeout 600 ${COH_CTEST_ARGS:-}
