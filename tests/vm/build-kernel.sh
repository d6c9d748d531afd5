#!/usr/bin/env bash
# Builds (or reuses) the test VM's kernel from Debian's linux-source-6.1 and
# kernel/configs/test-vm.config; prints the bzImage path on stdout.
# Cache: $COH_VM_CACHE (default ~/.cache/libcoherent-vm), keyed by the source
# package version and a hash of the fragment.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
frag=${COH_VM_FRAGMENT:-$top/kernel/configs/test-vm.config}
cache=${COH_VM_CACHE:-${HOME:-/root}/.cache/libcoherent-vm}
tarball=/usr/src/linux-source-6.1.tar.xz
[[ -f $tarball ]] || { echo "build-kernel: $tarball missing (apt-get install linux-source-6.1)" >&2; exit 1; }
ver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$( (echo "$ver"; cat "$frag") | sha256sum | cut -c1-16)
out=$cache/kernel-$key
src=$cache/linux-source-$ver
if [[ -f $out/bzImage ]]; then
  [[ -f $src/Makefile ]] && echo "$src" >"$out/source"
  echo "build-kernel: cached $out/bzImage (linux-source $ver)" >&2
  echo "$out/bzImage"
  exit 0
fi
mkdir -p "$cache"
if [[ ! -f $src/Makefile ]]; then
  echo "build-kernel: extracting $tarball" >&2
  rm -rf "$src.tmp" && mkdir -p "$src.tmp"
  tar -C "$src.tmp" -xf "$tarball"
  mv "$src.tmp"/linux-source-6.1 "$src" && rmdir "$src.tmp"
fi
obj=$out.obj
rm -rf "$obj" && mkdir -p "$obj"
make -s -C "$src" ARCH=x86_64 O="$obj" tinyconfig >/dev/null
on=$(sed -n 's/^\(CONFIG_[A-Z0-9_]*\)=y$/\1/p' "$frag")
off=$(sed -n 's/^# \(CONFIG_[A-Z0-9_]*\) is not set$/\1/p' "$frag")
# twice: some options appear only once their dependencies are on
for pass in 1 2; do
  args=()
  for o in $on; do args+=(-e "${o#CONFIG_}"); done
  for o in $off; do args+=(-d "${o#CONFIG_}"); done
  "$src/scripts/config" --file "$obj/.config" "${args[@]}"
  make -s -C "$src" ARCH=x86_64 O="$obj" olddefconfig >/dev/null
done
missing=()
for o in $on; do grep -qx "$o=y" "$obj/.config" || missing+=("$o"); done
if ((${#missing[@]})); then
  echo "build-kernel: options dropped by Kconfig (unmet dependencies): ${missing[*]}" >&2
  exit 1
fi
echo "build-kernel: building bzImage (linux-source $ver, $(nproc) jobs)" >&2
start=$(date +%s)
make -s -C "$src" ARCH=x86_64 O="$obj" -j"$(nproc)" bzImage >"$obj/build.log" 2>&1 || {
  tail -30 "$obj/build.log" >&2
  exit 1
}
mkdir -p "$out"
cp "$obj/arch/x86/boot/bzImage" "$out/bzImage"
cp "$obj/.config" "$out/config"
echo "$src" >"$out/source"
rm -rf "$obj"
echo "build-kernel: built in $(( $(date +%s) - start )) s" >&2
echo "$out/bzImage"
