#!/usr/bin/env bash
# Installs what building and testing libcoherent needs (Debian 12).  Root only;
# a no-op when everything is present already.
set -euo pipefail
pkgs=(cmake make gcc clang pkg-config libnuma-dev check libpci-dev pci.ids zlib1g-dev groff-base man-db libdrm-dev linux-libc-dev valgrind
      ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd clinfo   # OpenCL: tests and one example only
      openmpi-bin libopenmpi-dev   # MPI: the mpi_window example and its tests only (optional)
      libjemalloc-dev libmemkind-dev   # the pool benchmark's peers (coh-bench only; optional)
      dpkg-dev lintian)   # scripts/package.sh: dpkg-shlibdeps, dpkg-buildflags, lintian
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "deps: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
