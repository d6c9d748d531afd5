#!/bin/sh
# SPDX-License-Identifier: MIT
#
# check-man.sh SOURCE_DIR
#
# Checks the API reference in SOURCE_DIR/docs/man against the library:
#  1. every name exported by core/libcoherent.map has docs/man/<name>.3,
#     and no .3 page documents a name that is not exported;
#  2. a page that is a ".so man3/<page>.3" redirect points at a real page
#     of docs/man;
#  3. the real page lists the name in NAME and its SYNOPSIS carries the
#     prototype of include/coherent.h (compared without white space);
#  4. when groff is installed, every real page (cohctl.1 too) formats without a warning
#     (groff -man -Tutf8 -ww -z).
# Prints every problem found and exits 1 if there was one.
set -u

src=${1:?usage: check-man.sh SOURCE_DIR}
map=$src/core/libcoherent.map
hdr=$src/include/coherent.h
man=$src/docs/man
fail=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

problem() {
	echo "check-man: $*" >&2
	fail=1
}

for f in "$map" "$hdr" "$man"; do
	[ -e "$f" ] || { echo "check-man: $f: not found" >&2; exit 1; }
done

# Exported names: the identifiers of the global: section of the version script.
awk '
	/global:/ { g = 1; next }
	/local:/  { g = 0 }
	g { gsub(/[ \t;]/, ""); if ($0 ~ /^[A-Za-z_][A-Za-z0-9_]*$/) print }
' "$map" | sort -u >"$tmp/names"
[ -s "$tmp/names" ] || { echo "check-man: no exported name found in $map" >&2; exit 1; }

# Prototypes of the header, one per line as "name<TAB>prototype-without-spaces".
awk '
	/^[ \t]*#/ { next }
	/COH_API/ { p = ""; on = 1; sub(/.*COH_API/, "") }
	on {
		line = $0
		if (index(line, ";")) { line = substr(line, 1, index(line, ";")); on = 0 }
		p = p line
		if (!on) {
			n = p; sub(/\(.*/, "", n); sub(/[ \t]+$/, "", n); sub(/.*[^A-Za-z0-9_]/, "", n)
			gsub(/[ \t]/, "", p)
			print n "\t" p
		}
	}
' "$hdr" >"$tmp/protos"

# The page that holds a name's documentation: itself, or the target of its .so.
resolve() {
	first=$(grep -v '^\.\\"' "$1" | sed -n '/./{p;q;}')
	case $first in
	.so\ *)
		target=${first#.so }
		echo "$man/${target##*/}"
		;;
	*)
		echo "$1"
		;;
	esac
}

# Text of a section of a page with the usual font requests and quotes removed.
section_text() {
	awk -v sec="$2" '
		/^\.SH/ { on = ($0 ~ "^\\.SH[ \t]+\"?" sec "\"?[ \t]*$"); next }
		!on || /^\.\\"/ { next }
		/^\.(B|I|BI|IB|BR|RB|IR|RI)([ \t]|$)/ { sub(/^\.[A-Z]+[ \t]*/, ""); print; next }
		/^\./ { next }
		{ print }
	' "$1" | sed -e 's/\\f[BIRP]//g' -e 's/\\-/-/g' -e 's/\\&//g' -e 's/\\e/\\/g' -e 's/"//g'
}

while read -r name; do
	page=$man/$name.3
	if [ ! -f "$page" ]; then
		echo "$name" >>"$tmp/missing"
		continue
	fi
	real=$(resolve "$page")
	if [ ! -f "$real" ]; then
		problem "$name.3: .so target ${real##*/} does not exist"
		continue
	fi
	if [ "$(resolve "$real")" != "$real" ]; then
		problem "$name.3: .so target ${real##*/} is itself a redirect"
		continue
	fi
	if ! section_text "$real" NAME | tr ',' ' ' | tr -s ' \t' '\n\n' | grep -qx -- "$name"; then
		problem "${real##*/}: NAME does not list $name"
	fi
	proto=$(awk -F '\t' -v n="$name" '$1 == n { print $2; exit }' "$tmp/protos")
	if [ -z "$proto" ]; then
		problem "$name: exported but no COH_API prototype in include/coherent.h"
	elif ! section_text "$real" SYNOPSIS | tr -d ' \t\n' | grep -qF -- "$proto"; then
		problem "${real##*/}: SYNOPSIS lacks the prototype of $name: $proto"
	fi
done <"$tmp/names"

if [ -s "$tmp/missing" ]; then
	problem "no docs/man/<name>.3 for these exported names:"
	sed 's/^/  /' "$tmp/missing" >&2
fi

# Pages for names the library does not export (stale after a removal or rename).
for page in "$man"/*.3; do
	[ -f "$page" ] || continue
	n=${page##*/}
	n=${n%.3}
	grep -qx -- "$n" "$tmp/names" || problem "$n.3: $n is not exported by core/libcoherent.map"
done

if command -v groff >/dev/null 2>&1; then
	for page in "$man"/*.1 "$man"/*.3 "$man"/*.7; do
		[ -f "$page" ] || continue
		[ "$(resolve "$page")" = "$page" ] || continue   # redirects were checked above
		out=$(LC_ALL=C groff -man -Tutf8 -ww -z "$page" 2>&1)
		rc=$?
		if [ $rc -ne 0 ] || [ -n "$out" ]; then
			problem "${page##*/}: groff reports (exit $rc):"
			printf '%s\n' "$out" | sed 's/^/  /' >&2
		fi
	done
else
	echo "check-man: groff not found, formatting not checked"
fi

[ $fail -eq 0 ] && echo "check-man: $(wc -l <"$tmp/names") exported names documented"
exit $fail
