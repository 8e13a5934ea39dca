#!/bin/bash
# Build a patched amdgpu.ko for one kernel: DKMS's MAKE step (see dkms.conf), also
# usable by hand. Upstream kernels ship no amdgpu source in their headers package, so
# the driver source comes from the distribution's kernel source of the same version
# (Debian: linux-source-<major.minor>), the REEF series for that base is applied with no
# fuzz, and the amdgpu directory is built as an external module against the kernel's
# headers.
#
# Usage: dkms-build.sh KERNELVER        build into ./build (amdgpu.ko in
#                                       build/drivers/gpu/drm/amd/amdgpu/)
#        dkms-build.sh --clean          remove ./build
# Env:   REEF_KERNEL_SOURCE  tarball or unpacked tree (default
#                            /usr/src/linux-source-<major.minor>.tar.xz)
#        REEF_KDIR           kernel build dir (default /lib/modules/KERNELVER/build)
#        REEF_ALLOW_VERSION_MISMATCH=1  build even if the Debian source and headers
#                            package versions differ (the module may then misbehave)
#        JOBS                parallel jobs (default nproc)
#        REEF_DKMS_TARGETS   build only these targets (e.g. "../amdkfd/kfd_reef.o"), not
#                            the module: lets an offline check compile the patched files
#                            against a distribution's headers in seconds
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
B=$HERE/build

if [ "${1:-}" = --clean ]; then
	rm -rf "$B"
	exit 0
fi
[ $# -eq 1 ] || { sed -n '2,23p' "$0"; exit 2; }

kver=$1
mm=$(echo "$kver" | sed -nE 's/^([0-9]+\.[0-9]+).*/\1/p')
KDIR=${REEF_KDIR:-/lib/modules/$kver/build}
SRC=${REEF_KERNEL_SOURCE:-/usr/src/linux-source-$mm.tar.xz}
JOBS=${JOBS:-$(nproc)}
series=$HERE/linux-$mm

die() { echo "dkms-build: $*" >&2; exit 1; }

[ -n "$mm" ] || die "cannot parse kernel version '$kver'"
[ -d "$series" ] ||
	die "no patch series for Linux $mm (have: $(cd "$HERE" && ls -d linux-* | tr '\n' ' '))"
[ -f "$KDIR/Makefile" ] || die "no kernel headers at $KDIR (install linux-headers-$kver)"
[ -e "$SRC" ] || die "no kernel source at $SRC (Debian: apt-get install linux-source-$mm)"
grep -q '^CONFIG_DRM_AMDGPU=m' "$KDIR/include/config/auto.conf" ||
	die "kernel $kver is not configured with CONFIG_DRM_AMDGPU=m"
grep -q '^CONFIG_HSA_AMD=y' "$KDIR/include/config/auto.conf" ||
	die "kernel $kver is not configured with CONFIG_HSA_AMD=y"

# Debian: the source package must be the same upload as the headers, or structure
# layouts shared with the rest of the kernel may differ.
if command -v dpkg-query > /dev/null && [ -f "$SRC" ]; then
	hv=$(dpkg-query -W -f='${Version}' "linux-headers-$kver" 2>/dev/null || true)
	sv=$(dpkg-query -W -f='${Version}' "linux-source-$mm" 2>/dev/null || true)
	if [ -n "$hv" ] && [ -n "$sv" ] && [ "$hv" != "$sv" ]; then
		[ "${REEF_ALLOW_VERSION_MISMATCH:-0}" = 1 ] ||
			die "linux-headers-$kver is $hv but linux-source-$mm is $sv: install matching versions"
		echo "dkms-build: warning: headers $hv, source $sv (REEF_ALLOW_VERSION_MISMATCH=1)"
	fi
fi

rm -rf "$B"
mkdir -p "$B"
echo "dkms-build: extracting drivers/gpu/drm/amd from $SRC"
if [ -d "$SRC" ]; then
	mkdir -p "$B/drivers/gpu/drm"
	cp -a "$SRC/drivers/gpu/drm/amd" "$B/drivers/gpu/drm/"
else
	tar -xJf "$SRC" -C "$B" --strip-components=1 --wildcards '*/drivers/gpu/drm/amd/*'
fi

for p in "$series"/*.patch; do
	echo "dkms-build: applying $(basename "$p")"
	(cd "$B" && patch -p1 -F0 -N -s --no-backup-if-mismatch < "$p") ||
		die "$(basename "$p") does not apply to $SRC"
done

# amdgpu's Makefile finds its include dirs through $(srctree)/$(src), which is wrong
# for an external module; FULL_AMD_PATH on the command line overrides it. The new uapi
# header is not in the kernel headers package, hence the extra include dir.
# Trace headers name themselves as ../../drivers/gpu/drm/amd/... relative to the
# kernel's include/trace; an include/trace dir in the build tree makes that resolve.
mkdir -p "$B/include/trace"
echo "dkms-build: building amdgpu for $kver with $JOBS jobs"
make -C "$KDIR" M="$B/drivers/gpu/drm/amd/amdgpu" \
	FULL_AMD_PATH="$B/drivers/gpu/drm/amd" \
	KCFLAGS="-I$B/include -I$B/include/trace" \
	-j"$JOBS" ${REEF_DKMS_TARGETS:-modules}
[ -n "${REEF_DKMS_TARGETS:-}" ] || ls -l "$B/drivers/gpu/drm/amd/amdgpu/amdgpu.ko"
