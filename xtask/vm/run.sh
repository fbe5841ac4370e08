#!/bin/bash
# Run one command inside a throw-away QEMU VM that sees the host's root
# filesystem read-only (9p), a writable scratch dir at the same path as on the
# host, a tmpfs /tmp, and a pure cgroup v2 hierarchy. The command's stdout and
# stderr stream to our stdout; our exit code is the command's.
#
# usage: run.sh [-m MEM] [-c CPUS] [-s SCRATCH] [-r RODIR]... [-n] [-f HOSTPORT:GUESTPORT]...
#                  [-a KERNEL_ARGS] [-t TIMEOUT_S] [-C "cpu memory pids io cpuset"]
#                  [-M pc|q35] [-A ACCEL] -- CMD [ARGS...]
# env: VMTEST_KERNEL, VMTEST_INITRD (default: $VMTEST_CACHE/{vmlinux,initrd.gz}),
#      VMTEST_CACHE (default /var/cache/runner-vmtest, made by setup.sh = cargo xtask vm setup), VMTEST_QEMU,
#      VMTEST_KEEP=1 (keep the run dir with console.log), VMTEST_CPU (default max),
#      VMTEST_ENV="VAR1 VAR2" (also forwarded: all RUST_*, CARGO_*, NEXTEST_*, RUNNER_* vars, CI)
# exit: command's code; 124 = timeout; 125 = VM died before reporting a code.
set -uo pipefail
CACHE=${VMTEST_CACHE:-/var/cache/runner-vmtest}
KERNEL=${VMTEST_KERNEL:-$CACHE/vmlinux}
INITRD=${VMTEST_INITRD:-$CACHE/initrd.gz}
QEMU=${VMTEST_QEMU:-qemu-system-x86_64}
MEM=1G CPUS=2 SCRATCH= NET=0 FWD=() KARGS= TMO=600 MACHINE=pc ACCEL=auto KEEP= CTL=
while getopts "m:c:s:nf:a:t:M:A:r:C:" o; do
    case $o in
        m) MEM=$OPTARG ;; c) CPUS=$OPTARG ;; s) SCRATCH=$OPTARG ;;
        n) NET=1 ;; f) NET=1; FWD+=("$OPTARG") ;; a) KARGS="$KARGS $OPTARG" ;;
        t) TMO=$OPTARG ;; M) MACHINE=$OPTARG ;; A) ACCEL=$OPTARG ;;
        r) KEEP="$KEEP,$(cd "$OPTARG" && pwd)" ;;
        C) CTL=$(echo "$OPTARG" | tr ' ' ,) ;;
        *) sed -n '2,14p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { sed -n '2,14p' "$0"; exit 2; }

RUN=$(mktemp -d "${TMPDIR:-/tmp}/vmrun.XXXXXX")
[ -n "$SCRATCH" ] || SCRATCH=$RUN/scratch
mkdir -p "$SCRATCH"; SCRATCH=$(cd "$SCRATCH" && pwd)
cleanup() { [ "${VMTEST_KEEP:-0}" = 1 ] || rm -rf "$RUN"; }
trap cleanup EXIT

# The guest gets a fresh tmpfs on /tmp; host dirs under /tmp that the command
# needs (-r DIR, and the current dir) are bind-mounted back, read-only.
case $PWD in /tmp/*) KEEP="$KEEP,$PWD" ;; esac
# the guest kernel's modules (for request_module: veth, nf_tables, ...)
KROOT=$CACHE/kroot
if [ -d "$KROOT/lib/modules" ]; then
    KROOT=$(cd "$KROOT" && pwd)
    case $KROOT in /tmp/*) KEEP="$KEEP,$KROOT" ;; esac
else KROOT=; fi
KEEP=${KEEP#,}
case ",$KEEP," in *" "*) echo "vm-run: -r paths must not contain spaces" >&2; exit 2 ;; esac

# The command script (run by the guest's /bin/sh): same cwd as here, exact argv.
q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }  # POSIX single-quoting
{
    printf 'cd '; q "$PWD"; printf ' 2>/dev/null || cd /\n'
    printf 'VMTEST_SCRATCH='; q "$SCRATCH"; printf '\nexport VMTEST_SCRATCH\n'
    # forwarded environment: RUST_*, CARGO_*, NEXTEST_*, RUNNER_*, CI, and names in $VMTEST_ENV
    for v in $(compgen -e); do
        case " $v " in
            " RUST_"*|" CARGO_"*|" NEXTEST_"*|" RUNNER_"*|" CI ") ;;
            *) case " ${VMTEST_ENV:-} " in *" $v "*) ;; *) continue ;; esac ;;
        esac
        printf '%s=' "$v"; q "${!v}"; printf '\nexport %s\n' "$v"
    done
    printf 'exec'; for a in "$@"; do printf ' '; q "$a"; done; printf '\n'
} >"$RUN/cmd"

# KVM here is PVM (kvm_pvm): it only runs PVM-enabled guest kernels, and a
# Debian kernel dies with "KVM internal error ... emulation failure". So TCG.
if [ "$ACCEL" = auto ]; then ACCEL="tcg,thread=multi"; fi
# (-M microvm hangs at TSC calibration under TCG with this kernel: use pc/q35)
T=virtio-9p-pci SER=virtio-serial-pci NIC="virtio-net-pci,romfile="

# cheap boot-time savings under emulation (crypto self-tests, i8042 probing...)
FAST=${VMTEST_FAST_ARGS-cryptomgr.notests mitigations=off no_timer_check i8042.noaux i8042.nokbd i8042.nopnp}
ARGS=(-accel "$ACCEL" -M "$MACHINE" ${VMTEST_QEMU_EXTRA:-} -cpu "${VMTEST_CPU:-max}" -smp "$CPUS" -m "$MEM"
    -nodefaults -no-user-config -display none -no-reboot
    -serial "file:$RUN/console.log"
    -kernel "$KERNEL" -initrd "$INITRD"
    -append "console=ttyS0 quiet loglevel=4 panic=-1 $FAST vmrun.scratch=$SCRATCH vmrun.net=$NET${KEEP:+ vmrun.keep=$KEEP}${CTL:+ vmrun.controllers=$CTL}${KROOT:+ vmrun.kroot=$KROOT} $KARGS"
    -fsdev "local,id=fsroot,path=/,security_model=none,readonly=on,multidevs=remap"
    -device "$T,fsdev=fsroot,mount_tag=hostroot"
    -fsdev "local,id=fsscr,path=$SCRATCH,security_model=none,multidevs=remap"
    -device "$T,fsdev=fsscr,mount_tag=scratch"
    -fw_cfg "name=opt/vmrun/cmd,file=$RUN/cmd"
    -device "$SER"
    -chardev "file,id=out,path=$RUN/out" -device "virtserialport,chardev=out,name=vmrun.out"
    -chardev "file,id=rc,path=$RUN/rc" -device "virtserialport,chardev=rc,name=vmrun.rc")
if [ "$NET" = 1 ]; then
    UN="user,id=n0"
    for f in "${FWD[@]}"; do UN="$UN,hostfwd=tcp:127.0.0.1:${f%%:*}-:${f##*:}"; done
    ARGS+=(-netdev "$UN" -device "$NIC,netdev=n0")
fi

# The command's output comes through a FIFO so that it streams, and so that
# it works whatever our stdout is (a file opened without O_APPEND, a pipe...).
mkfifo "$RUN/out"
cat "$RUN/out" &
catpid=$!
timeout -k 5 "$TMO" "$QEMU" "${ARGS[@]}" </dev/null
qrc=$?
exec 3<>"$RUN/out"; exec 3>&-  # unblock cat if qemu never opened the FIFO (O_RDWR never blocks)
wait $catpid
rc=$(tr -dc '0-9' <"$RUN/rc" 2>/dev/null)
if [ -z "$rc" ]; then
    [ $qrc = 124 ] && echo "vm-run: timeout after ${TMO}s" >&2 || echo "vm-run: VM ended without an exit code (qemu rc=$qrc)" >&2
    echo "---- guest console (tail) ----" >&2; tail -n 40 "$RUN/console.log" >&2
    [ $qrc = 124 ] && exit 124 || exit 125
fi
exit "$rc"
