#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds a program outside the
# tree against it: with pkg-config, and with the CMake package.  Also checks
# that the shared library exports exactly the symbol map, with SONAME
# libcoherent.so.1 and every symbol at version LIBCOHERENT_1.0 or, added
# since, LIBCOHERENT_1.1.
set -euo pipefail
build=$1 src=$2 san=${3:-}
# a sanitizer build of the library needs the same runtime in the consumer
sanflags=${san:+-fsanitize=$san}
prefix=$(mktemp -d /tmp/coh-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libcoherent.so' | head -n1)")
[[ -f $prefix/include/coherent.h && -f $prefix/include/coherent_version.h ]] || { echo "headers not installed"; exit 1; }
[[ -x $prefix/bin/cohctl ]] || { echo "cohctl not installed"; exit 1; }
[[ -f $prefix/share/man/man3/coh_alloc.3 && -f $prefix/share/man/man1/cohctl.1 ]] || { echo "man pages not installed"; exit 1; }

# 1. pkg-config, from a folder outside the tree
out=$prefix/consumer
mkdir -p "$out"
cp "$src/examples/quickstart.c" "$out/main.c"
export PKG_CONFIG_PATH=$libdir/pkgconfig
flags=$(pkg-config --cflags --libs libcoherent)
(cd "$out" && cc -std=c11 -Wall -Wextra -Werror $sanflags main.c $flags -o consumer)
LD_LIBRARY_PATH=$libdir COH_BACKENDS=host "$out/consumer" >/dev/null
echo "pkg-config consumer: built with '$flags' and ran"

# 2. CMake package
mkdir -p "$out/cm"
cat > "$out/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(libcoherent 1.0 REQUIRED)
add_executable(consumer ../main.c)
target_link_libraries(consumer PRIVATE libcoherent::coherent)
CM
cmake -S "$out/cm" -B "$out/cm/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="$sanflags" >/dev/null
cmake --build "$out/cm/build" >/dev/null
LD_LIBRARY_PATH=$libdir COH_BACKENDS=host "$out/cm/build/consumer" >/dev/null
echo "CMake package consumer: built and ran"

# 3. exported symbols == the map, and a SONAME
so=$(readlink -f "$libdir/libcoherent.so")
soname=$(readelf -d "$so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[[ $soname == libcoherent.so.1 ]] || { echo "bad SONAME '$soname' (libcoherent.so.1 expected)"; exit 1; }
# every export carries the 1.0 or the 1.1 symbol version
if nm -D --defined-only "$so" | awk '$2 ~ /[TDBR]/ && $3 ~ /^coh_/' | grep -v '@@LIBCOHERENT_1\.[01]$' | grep -q .; then
  echo "exports outside LIBCOHERENT_1.0 and 1.1:"; nm -D --defined-only "$so" | grep -v 'LIBCOHERENT_1\.[01]' || true
  exit 1
fi
if nm -D --defined-only "$so" | awk '$3 ~ /^coh_pool_/' | grep -v '@@LIBCOHERENT_1\.1$' | grep -q .; then
  echo "coh_pool_* outside LIBCOHERENT_1.1"; exit 1
fi
exported=$(nm -D --defined-only "$so" | awk '$2 ~ /[TDBR]/ {print $3}' | sed 's/@.*//' | sort -u)
mapped=$(grep -o 'coh_[a-z_0-9]*' "$src/core/libcoherent.map" | sort -u)
if [[ "$exported" != "$mapped" ]]; then
  echo "exports differ from core/libcoherent.map:"; diff <(echo "$mapped") <(echo "$exported") || true
  exit 1
fi
echo "exports: $(echo "$exported" | wc -l) symbols, SONAME $soname"
