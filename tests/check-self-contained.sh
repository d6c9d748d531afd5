#!/usr/bin/env bash
# No test may read files outside the repository: a fresh clone on a fresh
# machine has nothing beside it.  Fails when a test source, CMake file or
# script names a path above the repository or an absolute path of one
# developer's machine.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
hits=$(git ls-files -- tests scripts .ci '*CMakeLists.txt' '*.cmake' 2>/dev/null |
  grep -v '^tests/check-self-contained.sh$' |
  xargs -r grep -nE '(\$\{(PROJECT|CMAKE)_SOURCE_DIR\}|\$top|\$src)/\.\./|\.\./\.\./shared|/work/(shared|main)' 2>/dev/null || true)
if [[ -n $hits ]]; then
  echo "paths outside the repository:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "self-contained: no test names a path outside the repository"
