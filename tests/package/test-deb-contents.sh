#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test-deb-contents.sh CPACK BUILD SRC VERSION LIBDIR [TOOLS_PACKAGE]
#
# Makes the Debian packages of BUILD with cpack into a temporary folder and
# checks what is in them, without installing anything:
#   - libcoherent1, libcoherent-dev (and TOOLS_PACKAGE) at VERSION, the
#     changelog's top entry for this VERSION;
#   - each package holds exactly its files (runtime: the .so.1 and its soname
#     link; dev: header, .so link, pkg-config, CMake package, man3/man7;
#     tools: cohctl and cohctl.1), plus copyright and changelog.Debian.gz;
#   - no file is in two packages, and no install rule is left outside the
#     three components;
#   - the soname is libcoherent.so.1 and names the runtime package; the
#     shlibs and symbols files match the library's exports;
#   - modes 0644/0755, root-owned, stripped, no RPATH/RUNPATH, compressed
#     man pages;
#   - the control fields a distribution needs (Section, Priority,
#     Maintainer, a long Description, Multi-Arch in the multiarch layout).
# Exits 77 (skip) without dpkg-deb or readelf.
set -uo pipefail
cpack=$1 build=$2 src=$3 version=$4 libdir=$5 tools=${6:-}
for tool in dpkg-deb readelf nm; do
	if ! command -v "$tool" >/dev/null; then
		echo "skip: $tool not found (dpkg-deb: apt-get install dpkg; readelf, nm: binutils)"
		exit 77
	fi
done
tmp=$(mktemp -d /tmp/coh-deb-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

if ! "$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1; then
	cat "$tmp/cpack.log"
	echo "FAIL: cpack -G DEB"
	exit 1
fi
runtime=libcoherent1
pkgs=("$runtime" libcoherent-dev ${tools:+"$tools"})
upstream=${version%-*}

top=$(head -n1 "$src/packaging/deb/changelog")
[[ $top == "libcoherent ($version) "* ]] ||
	bad "packaging/deb/changelog: top entry '$top' is not for $version (VERSION is $upstream): add an entry"

arch=$(dpkg-deb -f "$(ls "$tmp"/out/*.deb | head -n1)" Architecture)
declare -A deb
for p in "${pkgs[@]}"; do
	deb[$p]=$tmp/out/${p}_${version}_${arch}.deb
	[[ -f ${deb[$p]} ]] || { bad "no package ${p}_${version}_${arch}.deb (made: $(cd "$tmp/out" && ls ./*.deb))"; exit 1; }
done
n=$(ls "$tmp"/out/*.deb | wc -l)
((n == ${#pkgs[@]})) || bad "$n packages made, ${#pkgs[@]} expected"

# ---- file lists: every file matches its package's patterns, every pattern a file
lib=usr/$libdir
so=libcoherent.so.$upstream
esc() { sed 's/[.+]/\\&/g' <<<"$1"; }
L=$(esc "$lib") S=$(esc "$so")
declare -A allowed required
for p in "${pkgs[@]}"; do
	doc="usr/share/doc/$p/(copyright|changelog\.Debian\.gz)"
	required[$p]="usr/share/doc/$p/copyright usr/share/doc/$p/changelog.Debian.gz"
	case $p in
	"$runtime")
		allowed[$p]="^($L/$S|$L/libcoherent\.so\.1|$doc)$"
		required[$p]+=" $lib/$so $lib/libcoherent.so.1" ;;
	libcoherent-dev)
		allowed[$p]="^(usr/include/coherent(_version)?\.h|$L/libcoherent\.so|$L/pkgconfig/libcoherent\.pc|$L/cmake/libcoherent/libcoherent[A-Za-z-]*\.cmake|usr/share/man/man3/coh_[a-z0-9_]+\.3\.gz|usr/share/man/man7/libcoherent\.7\.gz|$doc)$"
		required[$p]+=" usr/include/coherent.h usr/include/coherent_version.h $lib/libcoherent.so $lib/pkgconfig/libcoherent.pc"
		required[$p]+=" $lib/cmake/libcoherent/libcoherentConfig.cmake $lib/cmake/libcoherent/libcoherentConfigVersion.cmake"
		required[$p]+=" $lib/cmake/libcoherent/libcoherentTargets.cmake usr/share/man/man3/coh_alloc.3.gz usr/share/man/man7/libcoherent.7.gz" ;;
	*)
		allowed[$p]="^(usr/bin/cohctl|usr/share/man/man1/cohctl\.1\.gz|$doc)$"
		required[$p]+=" usr/bin/cohctl usr/share/man/man1/cohctl.1.gz" ;;
	esac
	# "mode owner size date time ./path[ -> target]", files and links only
	dpkg-deb -c "${deb[$p]}" >"$tmp/$p.list"
	awk '$1 !~ /^d/ { p = $6; sub(/^\.\//, "", p); print p }' "$tmp/$p.list" | sort >"$tmp/$p.files"
	while read -r f; do
		grep -Eq "${allowed[$p]}" <<<"$f" || bad "$p: $f does not belong in it"
	done <"$tmp/$p.files"
	for f in ${required[$p]}; do
		grep -qxF "$f" "$tmp/$p.files" || bad "$p: $f missing"
	done
	# modes and owners
	awk -v p="$p" '
		$2 != "root/root" { print "FAIL: " p ": " $6 " owned by " $2 }
		$1 ~ /^d/ && $1 != "drwxr-xr-x" { print "FAIL: " p ": directory " $6 " is " $1 }
		$1 ~ /^-/ && $6 ~ /^\.\/usr\/bin\// && $1 != "-rwxr-xr-x" { print "FAIL: " p ": " $6 " is " $1 }
		$1 ~ /^-/ && $6 !~ /^\.\/usr\/bin\// && $1 != "-rw-r--r--" { print "FAIL: " p ": " $6 " is " $1 }
	' "$tmp/$p.list" >"$tmp/$p.modes"
	[[ -s $tmp/$p.modes ]] && { cat "$tmp/$p.modes"; fail=1; }
	# the man3 pages are all there: a file or a link per docs/man page
	if [[ $p == libcoherent-dev ]]; then
		want=$(cd "$src/docs/man" && ls ./*.3 | wc -l)
		have=$(grep -c '^usr/share/man/man3/' "$tmp/$p.files")
		((want == have)) || bad "$p: $have man3 pages, docs/man has $want"
		grep -q ' -> ' <(grep man3 "$tmp/$p.list") || bad "$p: the .so redirect pages are not links"
	fi
	dpkg-deb -x "${deb[$p]}" "$tmp/root"
	dpkg-deb -e "${deb[$p]}" "$tmp/ctrl-$p"
	# control fields
	for field in Section Priority Maintainer Description Version; do
		[[ -n $(dpkg-deb -f "${deb[$p]}" "$field") ]] || bad "$p: no $field field"
	done
	[[ $(dpkg-deb -f "${deb[$p]}" Version) == "$version" ]] || bad "$p: Version is not $version"
	(($(dpkg-deb -f "${deb[$p]}" Description | wc -l) >= 3)) || bad "$p: Description has no long text"
done
echo "file lists: $(for p in "${pkgs[@]}"; do printf '%s %s, ' "$p" "$(wc -l <"$tmp/$p.files")"; done)files"

# ---- no file in two packages
dups=$(for p in "${pkgs[@]}"; do cat "$tmp/$p.files"; done | sort | uniq -d)
[[ -z $dups ]] || bad "in two packages: $dups"
# every install rule is in a packaged component: nothing is left in "Unspecified"
if cmake --install "$build" --component Unspecified --prefix "$tmp/unspecified" >/dev/null 2>&1 &&
	[[ -n $(find "$tmp/unspecified" -type f 2>/dev/null) ]]; then
	bad "install rules outside the runtime/dev/tools components: $(cd "$tmp/unspecified" && find . -type f)"
fi

# ---- soname, shlibs, symbols
real=$tmp/root/$lib/$so
soname=$(readelf -d "$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == libcoherent.so.1 ]] || bad "SONAME '$soname', libcoherent.so.1 expected"
[[ $(readlink "$tmp/root/$lib/libcoherent.so.1") == "$so" ]] || bad "libcoherent.so.1 does not link to $so"
[[ $(readlink "$tmp/root/$lib/libcoherent.so") == libcoherent.so.1 ]] || bad "libcoherent.so does not link to libcoherent.so.1"
[[ $(cat "$tmp/ctrl-$runtime/shlibs" 2>/dev/null) == "libcoherent 1 $runtime (>= $upstream)" ]] ||
	bad "shlibs: '$(cat "$tmp/ctrl-$runtime/shlibs" 2>/dev/null)'"
grep -qx 'activate-noawait ldconfig' "$tmp/ctrl-$runtime/triggers" 2>/dev/null || bad "no ldconfig trigger"
[[ $(head -n1 "$tmp/ctrl-$runtime/symbols" 2>/dev/null) == "libcoherent.so.1 $runtime #MINVER#" ]] || bad "symbols: bad header"
# nm: "T coh_x@@LIBCOHERENT_1.0", and "A LIBCOHERENT_1.0" for a version node
exported=$(nm -D --defined-only "$real" | awk '{ if (!sub(/@@/, "@", $3)) $3 = $3 "@" $3; print $3 }' | sort)
listed=$(awk '/^ / { print $1 }' "$tmp/ctrl-$runtime/symbols" 2>/dev/null | sort)
[[ $exported == "$listed" ]] || { bad "symbols file differs from the exports (< symbols, > library):"; diff <(echo "$listed") <(echo "$exported"); }
# each symbol's version: LIBCOHERENT_X.Y -> X.Y.0
awk '/^ / { split($1, a, "@"); v = a[2]; sub(/^LIBCOHERENT_/, "", v); if ($2 != v ".0") print "FAIL: symbols: " $0 }' \
	"$tmp/ctrl-$runtime/symbols" | grep . && fail=1
for s in postinst postrm; do
	[[ -e $tmp/ctrl-$runtime/$s ]] && bad "$runtime has a $s (the ldconfig trigger does its work)"
done
echo "soname $soname in $runtime; $(wc -l <<<"$exported") versioned symbols in its symbols file"

# ---- ELF files: stripped, no RPATH/RUNPATH, runtime dependencies named
elves=("$real")
[[ -n $tools ]] && elves+=("$tmp/root/usr/bin/cohctl")
for f in "${elves[@]}"; do
	readelf -S "$f" | grep -Eq ' \.(symtab|debug_info|comment) ' && bad "${f#"$tmp"/root/}: not stripped"
	readelf -d "$f" | grep -Eq '\((RPATH|RUNPATH)\)' && bad "${f#"$tmp"/root/}: has an RPATH/RUNPATH"
done
if command -v dpkg-shlibdeps >/dev/null; then
	dpkg-deb -f "${deb[$runtime]}" Depends | grep -q 'libc6' || bad "$runtime: Depends lacks libc6 (shlibdeps)"
fi
dpkg-deb -f "${deb[libcoherent-dev]}" Depends | grep -qF "$runtime (= $version)" || bad "libcoherent-dev does not depend on $runtime (= $version)"
# pkg-config resolves Requires.private for a shared link too: each module's -dev package
for m in $(sed -n 's/^Requires.private://p' "$tmp/root/$lib/pkgconfig/libcoherent.pc" | tr ',' ' '); do
	dpkg-deb -f "${deb[libcoherent-dev]}" Depends | grep -qw -- "$m-dev" || bad "libcoherent-dev: libcoherent.pc requires $m, Depends lacks $m-dev"
done
if [[ -n $tools ]]; then
	dpkg-deb -f "${deb[$tools]}" Depends | grep -qF "$runtime (= $version)" || bad "$tools does not depend on $runtime (= $version)"
fi
if [[ -n $tools ]]; then
	[[ $(dpkg-deb -f "${deb[$tools]}" Multi-Arch) == foreign ]] || bad "$tools: not Multi-Arch: foreign"
fi
if [[ $libdir == lib/*-* ]]; then
	for p in "$runtime" libcoherent-dev; do
		[[ $(dpkg-deb -f "${deb[$p]}" Multi-Arch) == same ]] || bad "$p: not Multi-Arch: same"
	done
fi
# man pages are compressed and links resolve inside the package
while read -r l; do
	[[ -e $tmp/root/$l ]] || bad "dangling link $l"
done < <(find "$tmp/root/usr/share/man" -type l -printf '%P\n' | sed 's|^|usr/share/man/|')
find "$tmp/root/usr/share/man" -type f ! -name '*.gz' | grep . && bad "uncompressed man pages"

[[ $fail == 0 ]] && echo "deb contents: ${pkgs[*]} ($version, $arch) as expected"
exit $fail
