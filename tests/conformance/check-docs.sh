#!/usr/bin/env bash
# Every case the conformance suite can report is documented in docs/conformance.md
# (as `name` in its table), and the document names no case the suite lacks.
#   tests/conformance/check-docs.sh COH_CONFORMANCE DOC
set -euo pipefail
bin=${1:?usage: check-docs.sh COH_CONFORMANCE DOC}
doc=${2:?usage: check-docs.sh COH_CONFORMANCE DOC}
bad=0
mapfile -t names < <("$bin" --names)
# a set, not `printf | grep -q`: grep -q leaves early and printf's SIGPIPE
# then fails the pipeline under pipefail, now and then
declare -A known=()
for n in "${names[@]}"; do
  known[$n]=1
  grep -q "^| \`$n\` |" "$doc" || { echo "conformance-docs: case $n is not in $doc"; bad=1; }
done
while IFS= read -r n; do
  [[ -n ${known[$n]:-} ]] || { echo "conformance-docs: $doc documents $n, which the suite lacks"; bad=1; }
done < <(sed -n 's/^| `\([a-z0-9-]*\)` |.*/\1/p' "$doc")
echo "conformance-docs: ${#names[@]} cases, $( ((bad)) && echo mismatches above || echo all documented)"
exit $bad
