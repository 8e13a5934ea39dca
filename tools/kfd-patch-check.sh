#!/bin/bash
# Offline check of the kfd_patch series (what CI runs; no AMD GPU needed).
#
# For each kernel base (kfd_patch/linux-<base>/*.patch):
#   1. unpack the Debian linux-source tarball once into $REEF_CACHE/linux-source-<base>
#   2. configure once: defconfig + DRM_AMDGPU=m, HSA_AMD=y (+ SVM and IOMMUv2 so every
#      amdkfd file is compiled), CONFIG_WERROR off so W=1 warnings are counted, not fatal
#   3. build every amdkfd object with W=1 on the pristine tree (baseline warnings)
#   4. apply the series (patch -F0: no fuzz allowed), build the same objects plus the new
#      ones with W=1, and fail on any warning not in the baseline (line numbers ignored)
#   5. scripts/checkpatch.pl --strict on every patch: fail on any error
#   6. the series' uapi header must equal kfd_patch/include/uapi/linux/reef_kfd.h; it
#      must pass scripts/headers_install.sh and compile standalone as C and C++
#   7. restore the pristine tree (also after a failure or ^C)
# Options:
#   --base 6.1|6.12|all   which base(s) (default all; a missing 6.12 tarball is skipped
#                         with a note, a missing 6.1 tarball is an error)
#   --full-module         also build the whole amdgpu module (about 4 minutes on 2 cores)
#   --no-baseline         skip step 3 (then every warning in the patched build fails)
# Env: REEF_CACHE (default ~/.cache/reef_rocm), JOBS (default nproc),
#      REEF_LINUX_6_1_TARBALL (default /usr/src/linux-source-6.1.tar.xz),
#      REEF_LINUX_6_12_TARBALL (default $REEF_CACHE/debs/usr/src/linux-source-6.12.tar.xz,
#      fetched by tools/fetch-kernel-sources.sh)
# Exit: 0 all checks passed, 1 a check failed, 2 usage or setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${REEF_CACHE:-$HOME/.cache/reef_rocm}
JOBS=${JOBS:-$(nproc)}
BASES="6.1 6.12"
FULL=0
BASELINE=1
while [ $# -gt 0 ]; do
	case "$1" in
	--base) [ "$2" = all ] || BASES=$2; shift 2 ;;
	--full-module) FULL=1; shift ;;
	--no-baseline) BASELINE=0; shift ;;
	-h|--help) sed -n '2,27p' "$0"; exit 0 ;;
	*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done

HEADER=$ROOT/kfd_patch/include/uapi/linux/reef_kfd.h
FAILED=0
TREE=""
fail() { echo "FAIL: $*"; FAILED=1; }
log() { echo "== $*"; }

tarball_for() {
	case "$1" in
	6.1) echo "${REEF_LINUX_6_1_TARBALL:-/usr/src/linux-source-6.1.tar.xz}" ;;
	6.12) echo "${REEF_LINUX_6_12_TARBALL:-$CACHE/debs/usr/src/linux-source-6.12.tar.xz}" ;;
	*) echo "unknown base $1" >&2; exit 2 ;;
	esac
}

# Undo whatever a previous (possibly interrupted) run applied: files the series touched
# were saved under $TREE.orig before patching; files it created have no saved copy.
restore_tree() {
	local tree=$1 f
	[ -f "$tree/.reef-touched" ] || return 0
	while read -r f; do
		if [ -f "$tree.orig/$f" ]; then
			cp -p "$tree.orig/$f" "$tree/$f"
		else
			rm -f "$tree/$f"
		fi
	done < "$tree/.reef-touched"
	rm -f "$tree/.reef-touched"
}

cleanup() {
	[ -z "$TREE" ] || restore_tree "$TREE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

prepare_tree() {
	local base=$1 tarball=$2 tree=$3 stamp
	stamp="$(stat -c '%s %Y' "$tarball") $tarball"
	if [ ! -f "$tree/.reef-unpacked" ] || [ "$(cat "$tree/.reef-unpacked")" != "$stamp" ]; then
		log "$base: unpacking $tarball (about 1.5 GB)"
		rm -rf "$tree" "$tree.orig" "$tree.tmp"
		mkdir -p "$tree.tmp"
		nice tar -xJf "$tarball" -C "$tree.tmp"
		mv "$tree.tmp"/linux-source-* "$tree"
		rmdir "$tree.tmp"
		echo "$stamp" > "$tree/.reef-unpacked"
	fi
	restore_tree "$tree"
	if [ ! -f "$tree/.reef-configured" ]; then
		log "$base: configuring (defconfig + amdgpu/amdkfd) and modules_prepare"
		(
			cd "$tree"
			nice make -s defconfig
			scripts/config --module DRM_AMDGPU --enable HSA_AMD \
				--enable MEMORY_HOTPLUG --enable MEMORY_HOTREMOVE \
				--enable ZONE_DEVICE --enable DEVICE_PRIVATE --enable HSA_AMD_SVM \
				--enable AMD_IOMMU --enable AMD_IOMMU_V2 --disable WERROR
			nice make -s olddefconfig
			grep -q '^CONFIG_HSA_AMD=y' .config
			nice make -s -j"$JOBS" modules_prepare
		)
		touch "$tree/.reef-configured"
	fi
	# headers_install.sh needs unifdef, which modules_prepare does not build
	[ -x "$tree/scripts/unifdef" ] || (cd "$tree" && nice make -s scripts_unifdef)
}

# Every amdkfd object, named through the amdgpu directory (amdkfd has no Makefile of
# its own that kbuild visits: amdgpu's Makefile includes it).
kfd_objects() {
	local tree=$1 f
	for f in "$tree"/drivers/gpu/drm/amd/amdkfd/*.c; do
		echo "drivers/gpu/drm/amd/amdgpu/../amdkfd/$(basename "${f%.c}").o"
	done
}

# Build the amdkfd objects with W=1; print normalised warnings (file: message [flag]).
build_kfd() {
	local tree=$1 out=$2 rc=0
	rm -f "$tree"/drivers/gpu/drm/amd/amdkfd/*.o
	# shellcheck disable=SC2046
	(cd "$tree" && nice make -k -j"$JOBS" W=1 $(kfd_objects "$tree")) > "$out.log" 2>&1 || rc=$?
	grep -E '(warning|error):' "$out.log" |
		sed -E 's#^(drivers/gpu/drm/amd/)amdgpu/\.\./#\1#; s#^([^:]+):[0-9]+(:[0-9]+)?:#\1:#' |
		sort -u > "$out" || true
	return $rc
}

check_header() {
	local tree=$1 base=$2 tmp
	tmp=$(mktemp -d)
	if ! cmp -s "$tree/include/uapi/linux/reef_kfd.h" "$HEADER"; then
		fail "$base: include/uapi/linux/reef_kfd.h in the series differs from $HEADER"
	fi
	# headers_install.sh rejects CONFIG_ references and kernel-only constructs
	if ! (cd "$tree" && sh scripts/headers_install.sh include/uapi/linux/reef_kfd.h \
			"$tmp/reef_kfd.h"); then
		fail "$base: scripts/headers_install.sh rejects reef_kfd.h"
	fi
	printf '#include <linux/reef_kfd.h>\nint main(void) { return 0; }\n' > "$tmp/t.c"
	cp "$tmp/t.c" "$tmp/t.cc"
	mkdir -p "$tmp/inc/linux"
	cp "$tmp/reef_kfd.h" "$tmp/inc/linux/" 2>/dev/null || cp "$HEADER" "$tmp/inc/linux/"
	if ! gcc -std=c90 -pedantic -Wall -Wextra -Werror -I"$tmp/inc" -c "$tmp/t.c" -o "$tmp/c.o"; then
		fail "$base: reef_kfd.h does not compile as C90"
	fi
	if ! g++ -std=c++98 -pedantic -Wall -Wextra -Werror -I"$tmp/inc" -c "$tmp/t.cc" -o "$tmp/cc.o"; then
		fail "$base: reef_kfd.h does not compile as C++98"
	fi
	rm -rf "$tmp"
}

check_base() {
	local base=$1 tarball tree pdir p f new n_err
	tarball=$(tarball_for "$base")
	pdir=$ROOT/kfd_patch/linux-$base
	if [ ! -f "$tarball" ]; then
		if [ "$base" = 6.1 ]; then
			fail "6.1: $tarball missing (apt-get install linux-source-6.1)"
		else
			echo "SKIP: $base: $tarball missing (run tools/fetch-kernel-sources.sh)"
		fi
		return 0
	fi
	ls "$pdir"/*.patch > /dev/null 2>&1 || { fail "$base: no patches in $pdir"; return 0; }
	tree=$CACHE/linux-source-$base
	prepare_tree "$base" "$tarball" "$tree"
	TREE=$tree

	if [ "$BASELINE" = 1 ]; then
		log "$base: W=1 build of the pristine amdkfd objects (baseline)"
		build_kfd "$tree" "$CACHE/warnings-$base-base.txt" ||
			echo "note: the pristine tree itself has build errors (see $CACHE/warnings-$base-base.txt.log)"
	else
		: > "$CACHE/warnings-$base-base.txt"
	fi

	log "$base: applying $(ls "$pdir"/*.patch | wc -l) patches"
	: > "$tree/.reef-touched"
	for f in $(sed -n 's#^+++ b/##p' "$pdir"/*.patch | sort -u); do
		echo "$f" >> "$tree/.reef-touched"
		if [ -f "$tree/$f" ] && [ ! -f "$tree.orig/$f" ]; then
			mkdir -p "$(dirname "$tree.orig/$f")"
			cp -p "$tree/$f" "$tree.orig/$f"
		fi
	done
	for p in "$pdir"/*.patch; do
		if ! (cd "$tree" && patch -p1 -F0 -N -s --no-backup-if-mismatch < "$p"); then
			fail "$base: $(basename "$p") does not apply cleanly"
			return 0
		fi
	done

	log "$base: W=1 build of the patched amdkfd objects"
	if ! build_kfd "$tree" "$CACHE/warnings-$base-patched.txt"; then
		fail "$base: patched amdkfd objects do not build (see $CACHE/warnings-$base-patched.txt.log)"
		grep -E 'error' "$CACHE/warnings-$base-patched.txt.log" | head -20
	fi
	new=$(comm -13 "$CACHE/warnings-$base-base.txt" "$CACHE/warnings-$base-patched.txt")
	if [ -n "$new" ]; then
		fail "$base: new warnings:"
		echo "$new"
	else
		echo "$base: no new warnings ($(kfd_objects "$tree" | wc -l) objects," \
			"$(wc -l < "$CACHE/warnings-$base-base.txt") baseline warnings)"
	fi
	[ -f "$tree/drivers/gpu/drm/amd/amdkfd/kfd_reef.o" ] || fail "$base: kfd_reef.o not built"

	if [ "$FULL" = 1 ]; then
		log "$base: building the whole amdgpu module"
		if (cd "$tree" && nice make -j"$JOBS" drivers/gpu/drm/amd/amdgpu/amdgpu.ko) \
				> "$CACHE/amdgpu-$base.log" 2>&1; then
			echo "$base: amdgpu.ko built ($(du -h "$tree/drivers/gpu/drm/amd/amdgpu/amdgpu.ko" | cut -f1))"
		else
			fail "$base: amdgpu.ko does not build (see $CACHE/amdgpu-$base.log)"
		fi
	fi

	log "$base: checkpatch --strict"
	for p in "$pdir"/*.patch; do
		out=$(cd "$tree" && perl scripts/checkpatch.pl --strict --no-signoff -q "$p" 2>&1 || true)
		n_err=$(printf '%s\n' "$out" | grep -c '^ERROR:' || true)
		echo "$(basename "$p"): $(printf '%s\n' "$out" | sed -n 's/^total: //p' | head -1)"
		printf '%s\n' "$out" | grep -E '^(WARNING|CHECK):' || true
		[ "$n_err" = 0 ] || { fail "$base: checkpatch errors in $(basename "$p")"; echo "$out"; }
	done

	log "$base: uapi header"
	check_header "$tree" "$base"

	restore_tree "$tree"
	TREE=""
	[ ! -f "$tree/include/uapi/linux/reef_kfd.h" ] || fail "$base: tree not restored"
}

for b in $BASES; do
	check_base "$b"
done

if [ "$FAILED" = 0 ]; then
	echo "kfd-patch-check: all checks passed"
else
	echo "kfd-patch-check: FAILED"
	exit 1
fi
