#!/usr/bin/env bash
# The backend boundary (core/backend.h):
#  - a file under backends/ includes no core header but backend.h, and
#    declares none of the core's private structs (the context, targets and
#    records are opaque to a backend);
#  - no file under core/ names a vendor's driver or device file: backends
#    declare the device files they own (ops->owned_mappings).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
fail=0

core_headers=$(cd core && ls -- *.h)
while IFS= read -r f; do
  while IFS=: read -r line inc; do
    name=${inc##*/}
    if [[ $name != backend.h ]] && grep -qxF -- "$name" <<<"$core_headers"; then
      echo "$f:$line: includes core header \"$inc\" (a backend includes only backend.h)" >&2
      fail=1
    fi
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' "$f" |
           sed -E 's/^([0-9]+):[^<"]*[<"]([^>"]+)[>"].*/\1:\2/')
done < <(find backends -type f \( -name '*.c' -o -name '*.h' \) | sort)

hits=$(grep -rnE 'struct[[:space:]]+coh_(context|target|rec|backend_slot|amap|ptab)[[:space:]]*\{' backends \
         --include='*.c' --include='*.h' || true)
if [[ -n $hits ]]; then
  echo "backends declaring the core's private structs:" >&2
  echo "$hits" >&2
  fail=1
fi

# Vendors, their drivers and device files; generic kernel facts (/dev/dax,
# /dev/zero, /dev/shm, HMM, CXL as a standard) are not vendors.
vendor='nvidia|cuda|uvm|kfd|amdgpu|amd|rocm|hsa|dmirror|hmmtest|test_hmm|intel|/dev/dri'
hits=$(grep -rniwE "$vendor" core || true)
devs=$(grep -rnE '"/dev/[A-Za-z0-9_]' core | grep -vE '"/dev/(dax|zero|shm/)' || true)
if [[ -n $hits$devs ]]; then
  echo "vendor names or device files under core/ (a backend declares them):" >&2
  [[ -z $hits ]] || echo "$hits" >&2
  [[ -z $devs ]] || echo "$devs" >&2
  fail=1
fi

if (( fail )); then
  exit 1
fi
echo "boundary: backends include only core/backend.h; core/ names no vendor"
