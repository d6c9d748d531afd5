#!/usr/bin/env bash
# Packages the VM suite needs (Debian 12), installed when missing (root only).
set -euo pipefail
pkgs=(linux-source-6.1 linux-source-6.12 qemu-system-x86 busybox-static bc flex bison libelf-dev libssl-dev cpio xz-utils libibverbs-dev ibverbs-providers iproute2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0
if [[ $(id -u) != 0 ]]; then
  echo "vm deps: missing ${missing[*]} (run as root, or apt-get install them)" >&2
  exit 1
fi
echo "vm deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
