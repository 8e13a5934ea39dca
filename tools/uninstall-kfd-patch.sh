#!/bin/bash
# Remove the REEF-patched amdgpu module installed by tools/install-kfd-patch.sh.
#
# Usage: tools/uninstall-kfd-patch.sh [--dry-run] [--reload|--no-reload] [--yes]
#   --dry-run    print every step, change nothing (exit 0)
#   --reload     unload the patched amdgpu and load the stock one now (default: only if
#                nothing holds amdgpu, else ask for a reboot)
#   --no-reload  never reload; the stock module comes back at the next boot
# Steps: dkms remove (every kernel) -> rm -rf /usr/src/reef-amdgpu-VERSION (test hook:
# REEF_SRC_ROOT replaces /usr/src) -> depmod -> update-initramfs -u for every kernel the
# package was built for (Debian's dkms does not, and the initramfs would keep loading the
# patched amdgpu) -> reload or reboot notice.
# Exit codes: 0 ok, 1 a step failed, 2 usage, 3 refused.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC_ROOT=${REEF_SRC_ROOT:-/usr/src}	# test hook
PKG=reef-amdgpu
VER=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$ROOT/kfd_patch/dkms.conf")
DRY=0
RELOAD=auto
YES=0
while [ $# -gt 0 ]; do
	case "$1" in
	--dry-run) DRY=1; shift ;;
	--reload) RELOAD=yes; shift ;;
	--no-reload) RELOAD=no; shift ;;
	--yes|-y) YES=1; shift ;;
	-h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
	*) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done

say() { echo "[uninstall-kfd-patch] $*"; }
step_no=0
run() {
	step_no=$((step_no + 1))
	if [ "$DRY" = 1 ]; then
		echo "[dry-run] step $step_no: $*"
		return 0
	fi
	echo "+ $*"
	"$@"
}

if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
	say "run as root (or with sudo); --dry-run works as any user"
	exit 3
fi
if ! command -v dkms > /dev/null; then
	say "dkms is not installed, so $PKG cannot be registered; nothing to do"
	exit 0
fi
status=$(dkms status -m "$PKG" 2> /dev/null || true)
versions=$(printf '%s\n' "$status" | sed -nE "s#^$PKG/([^,:]+).*#\1#p" | sort -u)
if [ -z "$versions" ] && [ ! -d "$SRC_ROOT/$PKG-$VER" ]; then
	say "$PKG is not installed; nothing to do"
	[ "$DRY" = 0 ] && exit 0
	versions=$VER	# show the steps anyway
fi
say "registered: ${status:-none}"
if [ "$DRY" = 0 ] && [ "$YES" = 0 ] && [ -t 0 ]; then
	read -r -p "Remove $PKG ($versions)? [y/N] " a
	case "$a" in y|Y|yes) ;; *) say "aborted; nothing was changed"; exit 3 ;; esac
fi

# Kernels the package was built for ("reef-amdgpu/1.0.0, 6.1.0-27-amd64, x86_64: installed")
kernels=$(printf '%s\n' "$status" | sed -nE "s#^$PKG/[^,]+, ([^,]+),.*#\1#p" | sort -u)
[ -n "$kernels" ] || kernels=$(uname -r)

rc=0
for v in $versions; do
	run dkms remove -m "$PKG" -v "$v" --all || rc=1
	run rm -rf "$SRC_ROOT/$PKG-$v" || rc=1
done
run depmod -a || rc=1
if command -v update-initramfs > /dev/null || [ "$DRY" = 1 ]; then
	for k in $kernels; do
		run update-initramfs -u -k "$k" || rc=1
	done
else
	say "update-initramfs not found: rebuild the initramfs of $kernels by hand"
fi

users=$(awk '$1 == "amdgpu" { print $3 }' /proc/modules 2> /dev/null)
if [ "$RELOAD" = yes ] || { [ "$RELOAD" = auto ] && [ -n "$users" ] && [ "$users" = 0 ]; }; then
	if ! run modprobe -r amdgpu; then
		say "amdgpu is in use and cannot be unloaded: reboot to get the stock module"
	elif run modprobe amdgpu; then
		say "stock amdgpu loaded"
	else
		say "the stock amdgpu did not load: reboot"
	fi
else
	say "reboot (or: modprobe -r amdgpu && modprobe amdgpu) to load the stock amdgpu"
fi
[ "$DRY" = 1 ] && say "dry run done; nothing was changed"
exit $rc
