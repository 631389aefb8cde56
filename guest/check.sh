#!/bin/sh
# Run every guest program natively (x86-64) and under qemu-aarch64 (arm64) in
# a scratch directory; stdout and exit status must match each other and the
# expected status, and nothing may be left behind in the directory.
set -u
cd "$(dirname "$0")" || exit 2
GUEST=$(pwd)
QEMU=${QEMU_AARCH64:-qemu-aarch64}
TMP=$(mktemp -d) || exit 2
trap 'rm -rf "$TMP"' EXIT INT TERM
ulimit -c 0                     # no core files (qemu writes its own, too)
fail=0 total=0

# run ARCH ENV PROG ARGS... -> $TMP/{out,err,rc}.ARCH; fails if files are left
# in the cwd. The outer ( ... ) 2>/dev/null swallows the shell's own
# "Segmentation fault" report.
run() {
    arch=$1 envv=$2; shift 2
    prog=$1; shift
    mkdir "$TMP/cwd"
    if [ "$arch" = x86_64 ]; then
        ( (cd "$TMP/cwd" && exec env $envv "$GUEST/bin/x86_64/$prog" "$@") \
            >"$TMP/out.$arch" 2>"$TMP/err.$arch"; echo $? >"$TMP/rc.$arch" ) 2>/dev/null
    else
        ( (cd "$TMP/cwd" && exec env $envv "$QEMU" "$GUEST/bin/aarch64/$prog" "$@") \
            >"$TMP/out.$arch" 2>"$TMP/err.$arch"; echo $? >"$TMP/rc.$arch" ) 2>/dev/null
    fi
    left=$(ls -A "$TMP/cwd")
    rm -rf "$TMP/cwd"
    [ -z "$left" ] || echo "left behind: $left" >>"$TMP/err.$arch"
    [ -z "$left" ]
}

# case WANT_STATUS ENV PROG ARGS...   (ENV is "-" for none)
case_() {
    want=$1 envv=$2; shift 2
    [ "$envv" = - ] && envv=
    total=$((total + 1))
    desc=
    for w in "$@"; do
        case $w in *" "*|"") w="'$w'" ;; esac
        desc="${desc:+$desc }$w"
    done
    desc="$desc${envv:+ [$envv]}"
    run x86_64 "$envv" "$@"; clean_x=$?
    run aarch64 "$envv" "$@"; clean_a=$?
    rx=$(cat "$TMP/rc.x86_64") ra=$(cat "$TMP/rc.aarch64")
    why=
    [ "$rx" = "$want" ] || why="$why x86_64 status $rx != $want;"
    [ "$ra" = "$want" ] || why="$why aarch64 status $ra != $want;"
    cmp -s "$TMP/out.x86_64" "$TMP/out.aarch64" || why="$why stdout differs;"
    [ $clean_x = 0 ] && [ $clean_a = 0 ] || why="$why files left behind;"
    if [ -z "$why" ]; then
        printf 'ok    %-32s status=%-3s %s' "$desc" "$rx" "$(head -c 200 "$TMP/out.x86_64" | head -n 1)"
        echo
    else
        fail=$((fail + 1))
        printf 'FAIL  %-32s%s\n' "$desc" "$why"
        for a in x86_64 aarch64; do
            sed "s/^/    $a stdout: /" "$TMP/out.$a"
            sed "s/^/    $a stderr: /" "$TMP/err.$a"
        done
    fi
}

case_ 0   - hello
case_ 0   - exit_code
case_ 3   - exit_code 3
case_ 255 - exit_code 0xff
case_ 0   - args
case_ 0   - args one "two words" ""
case_ 0   MMUEMU_TEST=xyz args a
case_ 0   - anon_touch
case_ 0   - anon_touch 1
case_ 0   - anon_touch 1000
case_ 0   - anon_read
case_ 0   - anon_read 200
case_ 0   - file_read
case_ 0   - file_read 1
case_ 0   - file_read 300
case_ 0   - brk_heap
case_ 0   - brk_heap 7
case_ 0   - brk_heap 1000
case_ 0   - stack_grow
case_ 0   - stack_grow 10
case_ 0   - stack_grow 10000
case_ 139 - segv
case_ 0   - getrusage_self
case_ 0   - compute
case_ 0   - compute 12345
case_ 0   - tlb_stress
case_ 0   - tlb_stress 1024 4
case_ 0   - data_bss
case_ 0   - swap_stress
case_ 0   - swap_stress 1 1
case_ 0   - swap_stress 300 5
case_ 2   - swap_stress 0
case_ 0   - fork_swap
case_ 0   - fork_swap 1
case_ 0   - file_heavy
case_ 0   - file_heavy fh.dat 1 1
case_ 0   - file_heavy fh.dat 33 4
case_ 2   - compute bogus
case_ 0   - icache_sync
case_ 0   - icache_sync 9 remap

[ "$fail" = 0 ] && echo "check: all $total cases match (x86_64 native vs aarch64 $QEMU)" \
                || echo "check: $fail of $total cases FAILED"
[ "$fail" = 0 ]
