#!/bin/bash
# One-time (cacheable) setup of the test VM, as root on Debian 12 (bookworm):
#   - qemu-system-x86 10.x from bookworm-backports (7.2 from bookworm crashes
#     under TCG with -smp >= 2: double faults / GPFs in ~20-60% of boots),
#   - busybox-static, kmod, cpio, zstd, xz-utils, file (mkinitramfs.sh), python3 (vmlinux
#     extraction),
#   - a Debian kernel (default: the bookworm-backports 6.12 generic flavour),
#     unpacked with dpkg -x (nothing is installed into /boot),
#   - the PVH-bootable vmlinux extracted from its vmlinuz, and our initramfs.
# The host's apt configuration is not modified: backports is reached through a
# private sources list under $CACHE/apt, built from the mirror that
# /etc/apt/sources.list.d/debian.sources (or sources.list) already uses.
#
# env: VMTEST_CACHE (default /var/cache/runner-vmtest)
#      VMTEST_SUITE  (bookworm-backports [default] | bookworm -> 6.1 kernel)
#      VMTEST_KPKG   (kernel meta package, default linux-image-amd64;
#                     linux-image-cloud-amd64 has no 9p and is NOT supported here)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${VMTEST_CACHE:-/var/cache/runner-vmtest}
SUITE=${VMTEST_SUITE:-bookworm-backports}
KPKG=${VMTEST_KPKG:-linux-image-amd64}
mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/archives/partial"

# --- private apt config (main + updates + security + backports) -------------
mirror() { # first URI of the given suite family in the host's own sources
    { cat /etc/apt/sources.list.d/*.sources 2>/dev/null; } | awk -v want="$1" '
        /^URIs:/ {u=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i==want) {print u; exit}}'
    grep -hE "^deb +(\[[^]]*\] +)?[a-z]+://[^ ]+ +$1( |$)" /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1; exit}' || true
}
MAIN=$(mirror bookworm | head -n1 || true)
SEC=$(mirror bookworm-security | head -n1 || true)
[ -n "$MAIN" ] || { echo "setup: no bookworm mirror found in /etc/apt" >&2; exit 1; }
KR=/usr/share/keyrings/debian-archive-keyring.gpg
{
    echo "deb [signed-by=$KR] $MAIN bookworm main"
    echo "deb [signed-by=$KR] $MAIN bookworm-updates main"
    echo "deb [signed-by=$KR] $MAIN bookworm-backports main"
    [ -n "$SEC" ] && echo "deb [signed-by=$KR] $SEC bookworm-security main"
} >"$CACHE/apt/sources.list"
APTO=(-o "Dir::Etc::SourceList=$CACHE/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache::Archives=$CACHE/apt/archives"
      -o Acquire::Retries=3)

retry_lock() { # apt/dpkg may be busy with other work on this machine: wait
    local i
    for i in $(seq 1 60); do
        "$@" && return 0
        echo "setup: '$*' failed (lock held?), retry $i/60 in 10s" >&2; sleep 10
    done
    return 1
}
retry_lock apt-get "${APTO[@]}" -q update >/dev/null

# --- packages -----------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
if ! qemu-system-x86_64 --version 2>/dev/null | grep -qE 'version (9|1[0-9])\.'; then
    retry_lock apt-get "${APTO[@]}" install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86
fi
need=()
for p in busybox-static kmod cpio zstd xz-utils file python3; do dpkg -s $p >/dev/null 2>&1 || need+=($p); done
if [ ${#need[@]} -gt 0 ]; then
    retry_lock apt-get "${APTO[@]}" install -y -q --no-install-recommends "${need[@]}"
fi
qemu-system-x86_64 --version | head -n1

# --- kernel -------------------------------------------------------------------
if [ "$SUITE" = bookworm-backports ]; then T=(-t bookworm-backports); else T=(); fi
KIMG=$(apt-cache "${APTO[@]}" "${T[@]}" depends "$KPKG" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$KIMG" ] || { echo "setup: cannot resolve $KPKG in $SUITE" >&2; exit 1; }
KVER=${KIMG#linux-image-}
if [ "$(cat "$CACHE/kver" 2>/dev/null)" != "$KVER" ] || [ ! -s "$CACHE/vmlinux" ]; then
    rm -rf "$CACHE/kroot" "$CACHE/deb"; mkdir -p "$CACHE/deb"
    (cd "$CACHE/deb" && apt-get "${APTO[@]}" download "$KIMG" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
    dpkg -x "$CACHE"/deb/"$KIMG"_*.deb "$CACHE/kroot"
    rm -rf "$CACHE/deb"
    # PVH entry needs the uncompressed ELF vmlinux (saves the in-guest
    # decompression, ~2 s under emulation): find the compressed payload.
    VMLINUZ=$CACHE/kroot/boot/vmlinuz-$KVER
    python3 - "$VMLINUZ" "$CACHE/vmlinux.tmp" <<'EOF'
import lzma, sys, zlib
data = open(sys.argv[1], "rb").read()
out = None
for magic, kind in ((b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gzip")):
    off = data.find(magic)
    while off != -1 and out is None:
        try:
            if kind == "xz":
                out = lzma.LZMADecompressor().decompress(data[off:])
            elif kind == "gzip":
                out = zlib.decompressobj(31).decompress(data[off:])
            else:
                import subprocess
                p = subprocess.run(["zstd", "-dcq"], input=data[off:], capture_output=True)
                out = p.stdout if p.stdout[:4] == b"\x7fELF" else None
            if out is not None and out[:4] != b"\x7fELF":
                out = None
        except Exception:
            out = None
        if out is None:
            off = data.find(magic, off + 1)
    if out:
        break
if not out:
    sys.exit("cannot extract vmlinux from " + sys.argv[1])
open(sys.argv[2], "wb").write(out)
EOF
    mv "$CACHE/vmlinux.tmp" "$CACHE/vmlinux"
    depmod -b "$CACHE/kroot" "$KVER"
    echo "$KVER" >"$CACHE/kver"
fi
"$HERE/mkinitramfs.sh" "$CACHE/kroot" "$KVER" "$CACHE/initrd.gz"
grep -E '^CONFIG_(BPF_LSM|SECURITY_LANDLOCK|DEBUG_INFO_BTF|LSM)=' "$CACHE/kroot/boot/config-$KVER" | tr '\n' ' '; echo
echo "setup: kernel $KVER ready in $CACHE"
