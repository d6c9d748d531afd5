#!/usr/bin/env bash
# Builds (or reuses) the test VM's kernel from Debian's linux-source-$COH_VM_KERNEL
# (6.1 by default; 6.12 is the other one tested) and kernel/configs/test-vm.config;
# prints the bzImage path on stdout.
# COH_VM_PATCHES=1 applies kernel/patches/$COH_VM_KERNEL/series first (a
# hard-linked copy of the source tree: GNU patch replaces the files it changes,
# so the unpatched tree is never touched); a version without a series fails.
# A fragment NAME.config may have a supplement NAME-$COH_VM_KERNEL.config next
# to it, for options only that version has; its lines are added to the fragment's.
# Cache: $COH_VM_CACHE (default ~/.cache/libcoherent-vm), keyed by the source
# package version and a hash of the fragment (and of the patches applied).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
frag=${COH_VM_FRAGMENT:-$top/kernel/configs/test-vm.config}
cache=${COH_VM_CACHE:-${HOME:-/root}/.cache/libcoherent-vm}
kv=${COH_VM_KERNEL:-6.1}
[[ $kv =~ ^[0-9]+\.[0-9]+$ ]] || { echo "build-kernel: COH_VM_KERNEL=$kv: expected a version such as 6.1 or 6.12" >&2; exit 1; }
pkg=linux-source-$kv
tarball=/usr/src/$pkg.tar.xz
[[ -f $tarball ]] || { echo "build-kernel: $tarball missing (apt-get install $pkg)" >&2; exit 1; }
ver=$(dpkg-query -W -f='${Version}' "$pkg")
pdir=$top/kernel/patches/$kv
patches=()
if [[ ${COH_VM_PATCHES:-0} == 1 ]]; then
  [[ -f $pdir/series ]] || { echo "build-kernel: COH_VM_PATCHES=1, but there are no patches for linux $kv ($pdir/series missing)" >&2; exit 1; }
  while read -r p; do
    [[ -z $p || $p == \#* ]] || patches+=("$pdir/$p")
  done <"$pdir/series"
fi
frags=("$frag")
[[ -f ${frag%.config}-$kv.config ]] && frags+=("${frag%.config}-$kv.config")
# (no supplement, no patches: the key is that of version and fragment alone, as before)
key=$( (echo "$ver"; cat "${frags[@]}"; if ((${#patches[@]})); then cat "${patches[@]}"; fi) | sha256sum | cut -c1-16)
out=$cache/kernel-$key
src=$cache/linux-source-$ver
base=$src
if ((${#patches[@]})); then
  src=$cache/linux-source-$ver-patched-$key
fi
if [[ -f $out/bzImage ]]; then
  [[ -f $src/Makefile ]] && echo "$src" >"$out/source"
  echo "build-kernel: cached $out/bzImage ($pkg $ver)" >&2
  echo "$out/bzImage"
  exit 0
fi
mkdir -p "$cache"
if [[ ! -f $base/Makefile ]]; then
  echo "build-kernel: extracting $tarball" >&2
  rm -rf "$base.tmp" && mkdir -p "$base.tmp"
  tar -C "$base.tmp" -xf "$tarball"
  mv "$base.tmp/$pkg" "$base" && rmdir "$base.tmp"
fi
if [[ $src != "$base" && ! -f $src/.coh-patched ]]; then
  echo "build-kernel: applying ${#patches[@]} patch(es) of $pdir/series" >&2
  rm -rf "$src.tmp"
  cp -al "$base" "$src.tmp"
  for p in "${patches[@]}"; do
    patch -s -p1 -d "$src.tmp" --no-backup-if-mismatch <"$p" || {
      echo "build-kernel: $p does not apply to $pkg $ver" >&2
      rm -rf "$src.tmp"
      exit 1
    }
  done
  touch "$src.tmp/.coh-patched"
  mv "$src.tmp" "$src"
fi
obj=$out.obj
rm -rf "$obj" && mkdir -p "$obj"
make -s -C "$src" ARCH=x86_64 O="$obj" tinyconfig >/dev/null
on=$(sed -n 's/^\(CONFIG_[A-Z0-9_]*\)=y$/\1/p' "${frags[@]}")
off=$(sed -n 's/^# \(CONFIG_[A-Z0-9_]*\) is not set$/\1/p' "${frags[@]}")
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
echo "build-kernel: building bzImage ($pkg $ver, $(nproc) jobs)" >&2
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
