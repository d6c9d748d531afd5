#!/usr/bin/env bash
# Every case the conformance suite can report is documented in docs/conformance.md
# (as `name` in its table), and the document names no case the suite lacks.
#   tests/conformance/check-docs.sh COH_CONFORMANCE DOC
set -euo pipefail
bin=${1:?usage: check-docs.sh COH_CONFORMANCE DOC}
doc=${2:?usage: check-docs.sh COH_CONFORMANCE DOC}
bad=0
mapfile -t names < <("$bin" --names)
for n in "${names[@]}"; do
  grep -q "^| \`$n\` |" "$doc" || { echo "conformance-docs: case $n is not in $doc"; bad=1; }
done
while IFS= read -r n; do
  printf '%s\n' "${names[@]}" | grep -qx -- "$n" || { echo "conformance-docs: $doc documents $n, which the suite lacks"; bad=1; }
done < <(sed -n 's/^| `\([a-z0-9-]*\)` |.*/\1/p' "$doc")
echo "conformance-docs: ${#names[@]} cases, $( ((bad)) && echo mismatches above || echo all documented)"
exit $bad
