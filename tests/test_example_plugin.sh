#!/bin/sh
# The README's "write your own attention plugin" example: the code block in
# README.md is exactly examples/meanmix.c, it builds out of tree with
# pkg-config against etnas.pc, and etnas finds it through ETNAS_PLUGIN_PATH.
# Prints TAP.
set -u
: "${ET_BUILDDIR:=.}" "${ET_SRCDIR:=.}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "1..3"

awk '/^<!-- example: examples\/meanmix.c -->$/ {on = 1; next}
     on && /^```c$/ {code = 1; next}
     code && /^```$/ {exit}
     code {print}' "$ET_SRCDIR/README.md" >"$tmp/meanmix.c"
if [ -s "$tmp/meanmix.c" ] && cmp -s "$tmp/meanmix.c" "$ET_SRCDIR/examples/meanmix.c"; then
    echo "ok 1 - README's example is examples/meanmix.c"
else
    echo "not ok 1 - README's example is examples/meanmix.c"
fi

# etnas-uninstalled.pc in the build tree stands in for the installed etnas.pc
if PKG_CONFIG_PATH="$ET_BUILDDIR" cc -std=c11 -Wall -Wextra -Werror -shared -fPIC \
    $(PKG_CONFIG_PATH="$ET_BUILDDIR" pkg-config --cflags etnas) "$tmp/meanmix.c" -o "$tmp/meanmix.so"; then
    echo "ok 2 - builds with cc -shared -fPIC \$(pkg-config --cflags etnas)"
else
    echo "not ok 2 - builds with pkg-config"
fi

if ETNAS_PLUGIN_PATH="$tmp" "$ET_BUILDDIR/etnas" plugins 2>&1 | grep -q "^attention  meanmix "; then
    echo "ok 3 - etnas plugins lists it through ETNAS_PLUGIN_PATH"
else
    echo "not ok 3 - etnas plugins lists it"; exit 1
fi
cmp -s "$tmp/meanmix.c" "$ET_SRCDIR/examples/meanmix.c" && [ -s "$tmp/meanmix.so" ]
