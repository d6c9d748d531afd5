#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Builds the Debian packages (libcoherent1, libcoherent-dev,
# libcoherent-tools) and checks them:
#   1. a fresh RelWithDebInfo build out of tree (COH_PKG_BUILD_DIR, default
#      build-deb/) with prefix /usr and Debian's hardening flags
#      (dpkg-buildflags), without the tests and the fault-injection hook;
#   2. cpack -G DEB, then lintian: an error fails the script;
#   3. always, touching nothing outside the build folder: the packages
#      unpacked with dpkg-deb -x into a temporary root, and a program built
#      against that root with pkg-config and with find_package(libcoherent),
#      then run; cohctl from the root runs too;
#   4. only with CI=true (CI runs as root on a fresh, disposable machine):
#      the packages installed with apt-get, the same program built against
#      /usr and run, cohctl and its man page found, then the packages purged
#      and /usr checked for leftovers.
# The .deb files are left in the build folder.  COH_JOBS: parallel jobs of
# the build (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
scripts/deps.sh
dir=${COH_PKG_BUILD_DIR:-build-deb}
jobs=${COH_JOBS:-$(nproc)}

echo "== build ($dir, RelWithDebInfo, prefix /usr, Debian build flags)"
rm -rf "$dir"
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
cflags="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
ldflags=$(dpkg-buildflags --get LDFLAGS)
CFLAGS=$cflags LDFLAGS=$ldflags cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
	-DCOH_BUILD_TESTS=OFF -DCOH_BUILD_EXAMPLES=OFF -DCOH_FAULT_INJECTION=OFF >/dev/null
cmake --build "$dir" -j"$jobs" >/dev/null

echo "== cpack -G DEB"
rm -f "$dir"/*.deb
(cd "$dir" && cpack -G DEB >/dev/null)
debs=("$dir"/*.deb)
for d in "${debs[@]}"; do
	echo "-- $(basename "$d")"
	dpkg-deb -f "$d" Package Version Architecture Multi-Arch Section Depends | sed 's/^/   /'
done

echo "== lintian"
# initial-upload-closes-no-bugs: the first entry of a Debian upload closes
# its ITP bug; these packages are built upstream, there is no such bug.
lintian --fail-on error --display-info --suppress-tags initial-upload-closes-no-bugs "${debs[@]}" && rc=0 || rc=$?
if ((rc != 0)); then
	echo "package: lintian found errors (exit $rc)" >&2
	exit 1
fi
echo "lintian: no errors"

# consumer DIR PREFIX...: builds examples/quickstart.c with pkg-config and
# with the CMake package in DIR and runs both; PKG_CONFIG_PATH,
# CMAKE_PREFIX_PATH and LD_LIBRARY_PATH come from the caller.
consumer() {
	local out=$1
	mkdir -p "$out/cm"
	cp "$src/examples/quickstart.c" "$out/main.c"
	local flags
	flags=$(pkg-config --cflags --libs libcoherent)
	(cd "$out" && cc -std=c11 -Wall -Wextra -Werror main.c $flags -o consumer-pc)
	COH_BACKENDS=host "$out/consumer-pc" >/dev/null
	echo "pkg-config consumer: built with '$flags' and ran"
	cat >"$out/cm/CMakeLists.txt" <<-'CM'
		cmake_minimum_required(VERSION 3.18)
		project(consumer C)
		find_package(libcoherent 1.1 REQUIRED)
		add_executable(consumer ../main.c)
		target_link_libraries(consumer PRIVATE libcoherent::coherent)
	CM
	cmake -S "$out/cm" -B "$out/cm/build" >/dev/null
	cmake --build "$out/cm/build" >/dev/null
	COH_BACKENDS=host "$out/cm/build/consumer" >/dev/null
	echo "CMake consumer: find_package(libcoherent) from $(sed -n 's/^libcoherent_DIR:PATH=//p' "$out/cm/build/CMakeCache.txt"), built and ran"
}

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
tmp=$(mktemp -d /tmp/coh-package-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

echo "== unpacked into a temporary root (dpkg-deb -x): nothing installed"
root=$tmp/root
for d in "${debs[@]}"; do
	dpkg-deb -x "$d" "$root"
done
(
	export PKG_CONFIG_PATH=$root/usr/lib/$multiarch/pkgconfig
	export CMAKE_PREFIX_PATH=$root/usr
	export LD_LIBRARY_PATH=$root/usr/lib/$multiarch
	consumer "$tmp/extracted"
	"$root/usr/bin/cohctl" version
)

if [[ ${CI:-} != true ]]; then
	echo "== install with apt-get: skipped (only with CI=true, on a disposable machine)"
	exit 0
fi
echo "== apt-get install of the packages, then purge (CI=true)"
if [[ $(id -u) != 0 ]]; then
	echo "package: CI=true needs root to install the packages" >&2
	exit 1
fi
names=()
for d in "${debs[@]}"; do
	names+=("$(dpkg-deb -f "$d" Package)")
done
for n in "${names[@]}"; do
	if dpkg-query -W -f='${Status}' "$n" 2>/dev/null | grep -q installed; then
		echo "package: $n is installed already; not touching it" >&2
		exit 1
	fi
done
purge() { DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "${names[@]}" >/dev/null; }
trap 'purge || true; rm -rf "$tmp"' EXIT
debpaths=()
for d in "${debs[@]}"; do
	debpaths+=("$(realpath "$d")")
done
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${debpaths[@]}" >/dev/null
dpkg-query -W "${names[@]}"
(
	unset PKG_CONFIG_PATH CMAKE_PREFIX_PATH LD_LIBRARY_PATH
	consumer "$tmp/installed"
	cohctl version
	man -w cohctl >/dev/null && man -w coh_free >/dev/null && echo "man pages: cohctl(1), coh_free(3) found"
)
purge
trap 'rm -rf "$tmp"' EXIT
left=$(ls -d /usr/lib/"$multiarch"/libcoherent* /usr/lib/"$multiarch"/pkgconfig/libcoherent.pc \
	/usr/lib/"$multiarch"/cmake/libcoherent /usr/include/coherent*.h /usr/bin/cohctl \
	/usr/share/doc/libcoherent* /usr/share/man/man3/coh_*.3.gz 2>/dev/null || true)
if [[ -n $left ]]; then
	echo "package: left after purge:" >&2
	echo "$left" >&2
	exit 1
fi
echo "purged: nothing of libcoherent left in /usr"
