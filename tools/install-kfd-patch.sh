#!/bin/bash
# Install the REEF-patched amdgpu module through DKMS (see docs/kfd_patch.md).
#
# Usage: tools/install-kfd-patch.sh [--dry-run] [--kernel VER] [--reload|--no-reload] [--yes]
#   --dry-run     run every check, print every step, change nothing; exits 0 and names the
#                 check a real run would stop at, if any
#   --kernel VER  build for VER (default: the running kernel, uname -r)
#   --reload      unload and reload amdgpu after installing (only for the running kernel;
#                 default: reload only if nothing holds amdgpu, else ask for a reboot)
#   --no-reload   never reload; a reboot activates the module
#   --yes         do not ask for confirmation
# Steps: checks (root, kernel base supported, headers and config, matching Debian kernel
# source, build tools, Secure Boot and module signing, AMD's amdgpu-dkms, an AMD GPU) ->
# copy kfd_patch/ to /usr/src/reef-amdgpu-VERSION -> dkms add/build/install -> depmod ->
# update-initramfs -u -k VER (Debian's dkms no longer does it, and amdgpu is loaded from
# the initramfs at boot) -> reload or reboot notice -> wait for /dev/kfd (udevadm settle)
# -> verify with REEF_KFD_IOC_QUERY on every KFD GPU. Any failure after the first change,
# and ^C or SIGTERM, rolls back what was done (dkms remove, source dir removed, initramfs
# rebuilt, stock amdgpu reloaded if it can be).
# Exit codes: 0 ok (or dry run), 1 failed and rolled back, 2 usage, 3 refused by a check.
# Test hooks: REEF_KFD_SYSFS (default /sys/class/kfd/kfd), REEF_PCI_SYSFS (default
# /sys/bus/pci/devices), REEF_EFIVARS (default /sys/firmware/efi/efivars).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATCH_DIR=$ROOT/kfd_patch
PKG=reef-amdgpu
VER=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$PATCH_DIR/dkms.conf")
KFD_SYSFS=${REEF_KFD_SYSFS:-/sys/class/kfd/kfd}
PCI_SYSFS=${REEF_PCI_SYSFS:-/sys/bus/pci/devices}
EFIVARS=${REEF_EFIVARS:-/sys/firmware/efi/efivars}

DRY=0
KVER=$(uname -r)
RELOAD=auto
YES=0
while [ $# -gt 0 ]; do
	case "$1" in
	--dry-run) DRY=1; shift ;;
	--kernel) KVER=${2:?--kernel needs a version}; shift 2 ;;
	--reload) RELOAD=yes; shift ;;
	--no-reload) RELOAD=no; shift ;;
	--yes|-y) YES=1; shift ;;
	-h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
	*) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done
MM=$(echo "$KVER" | sed -nE 's/^([0-9]+\.[0-9]+).*/\1/p')
KDIR=/lib/modules/$KVER/build
SRC_TAR=${REEF_KERNEL_SOURCE:-/usr/src/linux-source-$MM.tar.xz}
DEST=/usr/src/$PKG-$VER

REFUSALS=()
step_no=0
say() { echo "[install-kfd-patch] $*"; }
check_ok() { say "check: $*: ok"; }
refuse() {
	local what=$1
	shift
	say "check: $what: REFUSED: $*"
	REFUSALS+=("$what: $*")
}
# Print a step; run it unless dry run. Returns the command's status.
run() {
	step_no=$((step_no + 1))
	if [ "$DRY" = 1 ]; then
		echo "[dry-run] step $step_no: $*"
		return 0
	fi
	echo "+ $*"
	"$@"
}

# ---------------------------------------------------------------- checks (read-only)

if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
	refuse "root" "run as root (or with sudo); --dry-run works as any user"
else
	check_ok "privileges"
fi

if [ -n "$MM" ] && [ -d "$PATCH_DIR/linux-$MM" ]; then
	check_ok "kernel $KVER has a patch series (kfd_patch/linux-$MM)"
else
	refuse "kernel" "no patch series for kernel $KVER (supported bases: $(cd "$PATCH_DIR" &&
		ls -d linux-* | sed 's/linux-//' | tr '\n' ' ' | sed 's/ $//'); see docs/kfd_patch.md to rebase)"
fi

if [ -f "$KDIR/Makefile" ] && [ -f "$KDIR/include/config/auto.conf" ]; then
	if grep -q '^CONFIG_DRM_AMDGPU=m' "$KDIR/include/config/auto.conf" &&
		grep -q '^CONFIG_HSA_AMD=y' "$KDIR/include/config/auto.conf"; then
		check_ok "headers $KDIR (CONFIG_DRM_AMDGPU=m, CONFIG_HSA_AMD=y)"
	else
		refuse "kernel config" "$KVER needs CONFIG_DRM_AMDGPU=m and CONFIG_HSA_AMD=y"
	fi
else
	refuse "headers" "no kernel headers at $KDIR (apt-get install linux-headers-$KVER)"
fi

if [ -f "$SRC_TAR" ] || [ -d "$SRC_TAR" ]; then
	hv=$(dpkg-query -W -f='${Version}' "linux-headers-$KVER" 2>/dev/null || true)
	sv=$(dpkg-query -W -f='${Version}' "linux-source-$MM" 2>/dev/null || true)
	if [ -n "$hv" ] && [ -n "$sv" ] && [ "$hv" != "$sv" ] &&
		[ "${REEF_ALLOW_VERSION_MISMATCH:-0}" != 1 ]; then
		refuse "kernel source" "linux-source-$MM is $sv but linux-headers-$KVER is $hv"
	else
		check_ok "kernel source $SRC_TAR${sv:+ ($sv)}"
	fi
else
	refuse "kernel source" "no $SRC_TAR (apt-get install linux-source-$MM)"
fi

missing=""
for t in dkms make gcc patch tar xz depmod modprobe update-initramfs udevadm; do
	command -v "$t" > /dev/null 2>&1 || missing="$missing $t"
done
if [ -z "$missing" ]; then
	check_ok "tools (dkms make gcc patch tar xz depmod modprobe update-initramfs udevadm)"
else
	refuse "tools" "missing:$missing (apt-get install dkms build-essential patch xz-utils" \
		"kmod initramfs-tools udev)"
fi

# Secure Boot: the variable's 5th byte (after 4 attribute bytes) is 1 when enabled.
sb=disabled
sbvar=$(ls "$EFIVARS"/SecureBoot-* 2> /dev/null | head -1)
if [ -n "$sbvar" ] && [ "$(od -An -t u1 -j4 -N1 "$sbvar" 2> /dev/null | tr -d ' ')" = 1 ]; then
	sb=enabled
fi
if [ "$sb" = enabled ]; then
	# Debian's dkms signs modules with /var/lib/dkms/mok.key; the key must be enrolled.
	if [ -f /var/lib/dkms/mok.pub ] && command -v mokutil > /dev/null &&
		mokutil --test-key /var/lib/dkms/mok.pub 2>&1 | grep -q 'already enrolled'; then
		check_ok "Secure Boot enabled, DKMS signing key enrolled"
	else
		refuse "Secure Boot" "enabled and the DKMS key is not enrolled: run 'dkms generate_mok'" \
			"(dkms >= 3.0.11) or create /var/lib/dkms/mok.{key,pub}, then" \
			"'mokutil --import /var/lib/dkms/mok.pub' and reboot to enroll it"
	fi
else
	check_ok "Secure Boot $( [ -d "$EFIVARS" ] && echo disabled || echo 'not in use (no EFI)')"
fi

amd_dkms=""
if dpkg-query -W -f='${Status}' amdgpu-dkms 2>/dev/null | grep -q 'install ok installed'; then
	amd_dkms="package amdgpu-dkms"
elif dkms status 2>/dev/null | grep -q '^amdgpu/'; then
	amd_dkms="dkms module amdgpu"
fi
if [ -n "$amd_dkms" ]; then
	refuse "amdgpu-dkms" "AMD's $amd_dkms is installed; its amdgpu would conflict. Rebase the" \
		"series onto it instead (docs/kfd_patch.md, 'ROCm amdgpu-dkms') or remove it"
else
	check_ok "no AMD amdgpu-dkms installed"
fi
old=$(dkms status -m "$PKG" 2>/dev/null | head -1)
[ -z "$old" ] || say "note: $PKG already registered ($old); it is replaced"

# An AMD GPU: a KFD topology node with a gpu_id, or a PCI display/processing device of
# vendor 0x1002. Without one, installing a module that cannot be exercised is refused.
gpus=""
for f in "$KFD_SYSFS"/topology/nodes/*/gpu_id; do
	[ -f "$f" ] && [ "$(cat "$f")" != 0 ] && gpus="$gpus kfd:$(cat "$f")"
done
for d in "$PCI_SYSFS"/*; do
	[ -f "$d/vendor" ] || continue
	if [ "$(cat "$d/vendor")" = 0x1002 ] && grep -qE '^0x(03|12)' "$d/class"; then
		gpus="$gpus pci:$(basename "$d")"
	fi
done
if [ -n "$gpus" ]; then
	check_ok "AMD GPU present:$gpus"
else
	refuse "AMD GPU" "no AMD GPU found (no KFD node in $KFD_SYSFS, no PCI device of vendor" \
		"0x1002 in $PCI_SYSFS)"
fi

if [ ${#REFUSALS[@]} -gt 0 ] && [ "$DRY" = 0 ]; then
	say "refusing to install; nothing was changed:"
	printf '  - %s\n' "${REFUSALS[@]}"
	exit 3
fi

# ---------------------------------------------------------------- steps

if [ "$DRY" = 0 ] && [ "$YES" = 0 ] && [ -t 0 ]; then
	read -r -p "Install $PKG $VER (patched amdgpu) for $KVER? [y/N] " a
	case "$a" in y|Y|yes) ;; *) say "aborted; nothing was changed"; exit 3 ;; esac
fi

DID_COPY=0
DID_ADD=0
DID_INSTALL=0
DID_RELOAD=0
ROLLING_BACK=0
rollback() {
	[ "$ROLLING_BACK" = 0 ] || return 0
	ROLLING_BACK=1
	trap '' INT TERM	# finish undoing before giving up
	say "rolling back"
	if [ "$DID_INSTALL" = 1 ] || [ "$DID_ADD" = 1 ]; then
		run dkms remove -m "$PKG" -v "$VER" --all || true
		run depmod -a "$KVER" || true
		# the initramfs may already hold the patched module
		run update-initramfs -u -k "$KVER" ||
			say "update-initramfs failed: run 'update-initramfs -u -k $KVER' before rebooting"
	fi
	[ "$DID_COPY" = 0 ] || run rm -rf "$DEST"
	if [ "$DID_RELOAD" = 1 ]; then
		# Not fatal: a busy amdgpu stays loaded until the next boot
		if run modprobe -r amdgpu; then
			run modprobe amdgpu || say "could not load the stock amdgpu: reboot to get it back"
		else
			say "amdgpu is in use and cannot be unloaded: reboot to get the stock module back"
		fi
	fi
	say "rolled back; the stock amdgpu module is installed again"
	exit 1
}
# ^C or SIGTERM half-way through (e.g. during the long dkms build) undoes what was done
trap 'say "interrupted"; rollback' INT TERM

# 1. the DKMS source tree (replace every older registration: two versions of the package
#    would both provide amdgpu.ko)
for v in $(dkms status -m "$PKG" 2> /dev/null | sed -nE "s#^$PKG/([^,:]+).*#\1#p" | sort -u); do
	run dkms remove -m "$PKG" -v "$v" --all > /dev/null 2>&1 || true
	[ "$v" = "$VER" ] || run rm -rf "/usr/src/$PKG-$v"
done
run rm -rf "$DEST"
run mkdir -p "$DEST" || rollback
DID_COPY=1
run cp -a "$PATCH_DIR/dkms.conf" "$PATCH_DIR/dkms-build.sh" "$PATCH_DIR/include" \
	"$PATCH_DIR"/linux-* "$DEST/" || rollback
# 2-4. register, build, install (Debian's dkms signs the module when mok.key exists)
run dkms add -m "$PKG" -v "$VER" || rollback
DID_ADD=1
run dkms build -m "$PKG" -v "$VER" -k "$KVER" || rollback
run dkms install -m "$PKG" -v "$VER" -k "$KVER" --force || rollback
DID_INSTALL=1
run depmod -a "$KVER" || rollback
# Debian's dkms no longer rebuilds the initramfs; without this the stock amdgpu from the
# old initramfs is what loads at boot.
run update-initramfs -u -k "$KVER" || rollback

# 5. activate: reload now if possible, else ask for a reboot
activate=reboot
if [ "$KVER" = "$(uname -r)" ] && [ "$RELOAD" != no ]; then
	users=$(awk '$1 == "amdgpu" { print $3 }' /proc/modules 2>/dev/null)
	if [ "$RELOAD" = yes ] || [ "${users:-0}" = 0 ]; then
		activate=reload
	fi
fi
if [ "$activate" = reload ]; then
	DID_RELOAD=1
	if ! run modprobe -r amdgpu; then
		say "amdgpu is in use and cannot be unloaded: the patched module is installed and"
		say "becomes active after a reboot; then verify with: python3 -m reef_rocm.rocm.kfd"
		DID_RELOAD=0
		activate=reboot
	else
		run modprobe amdgpu || rollback
	fi
fi

# 6. verify
if [ "$activate" = reboot ]; then
	say "installed for $KVER; reboot to load it, then verify with:" \
		"python3 -m reef_rocm.rocm.kfd --require-patch --require-gpu"
	run modinfo -k "$KVER" -n amdgpu || true
	if [ "$DRY" = 1 ]; then
		echo "[dry-run] (for the running kernel with amdgpu unused, or --reload, instead:" \
			"modprobe -r amdgpu; modprobe amdgpu; udevadm settle; python3 -m" \
			"reef_rocm.rocm.kfd --require-patch --require-gpu; on failure: dkms remove," \
			"rm -rf $DEST, update-initramfs, reload stock amdgpu)"
	fi
else
	# /dev/kfd and the topology appear when udev has processed the new module's events
	run udevadm settle --timeout=30 || say "udevadm settle timed out; verifying anyway"
	if ! run env PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
		python3 -m reef_rocm.rocm.kfd --require-patch --require-gpu; then
		say "verification failed: REEF_KFD_IOC_QUERY does not answer for every KFD GPU"
		rollback
	fi
fi

if [ "$DRY" = 1 ]; then
	if [ ${#REFUSALS[@]} -gt 0 ]; then
		say "dry run done; a real run would refuse (exit 3) because of:"
		printf '  - %s\n' "${REFUSALS[@]}"
	else
		say "dry run done; all checks passed"
	fi
	exit 0
fi
trap - INT TERM
say "done: $PKG $VER installed for $KVER and verified"
