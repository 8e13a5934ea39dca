#!/bin/bash
# Fetch the Debian kernel source packages that tools/kfd-patch-check.sh builds the
# kfd_patch series against:
#   - linux-source-6.1  (Debian 12 "bookworm"; installed with apt-get from the system's
#                        own sources, it lands in /usr/src/linux-source-6.1.tar.xz)
#   - linux-source-6.12 (Debian 13 "trixie"; bookworm has no 6.12 source package, so the
#                        .deb is fetched with a *private* apt configuration - its own
#                        sources list, lists and cache under the cache dir - and unpacked
#                        with dpkg-deb, never installed; the system's apt state is untouched)
#
# Usage: tools/fetch-kernel-sources.sh [--only 6.1|6.12] [--dry-run]
# Env:   REEF_CACHE (default ~/.cache/reef_rocm), REEF_DEBIAN_MIRROR (default
#        http://deb.debian.org/debian).
# Result: prints the path of each tarball; 6.12's is
#         $REEF_CACHE/debs/usr/src/linux-source-6.12.tar.xz
set -euo pipefail

CACHE=${REEF_CACHE:-$HOME/.cache/reef_rocm}
MIRROR=${REEF_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ONLY=""
DRY=0
while [ $# -gt 0 ]; do
	case "$1" in
	--only) ONLY=$2; shift 2 ;;
	--dry-run) DRY=1; shift ;;
	-h|--help) sed -n '2,17p' "$0"; exit 0 ;;
	*) echo "unknown argument: $1" >&2; exit 2 ;;
	esac
done

run() {
	echo "+ $*"
	[ "$DRY" = 1 ] || "$@"
}

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

if [ -z "$ONLY" ] || [ "$ONLY" = 6.1 ]; then
	if [ -f /usr/src/linux-source-6.1.tar.xz ]; then
		echo "6.1: /usr/src/linux-source-6.1.tar.xz (already installed)"
	else
		# Build tools for the check as well; all are in bookworm.
		run $SUDO apt-get update -q
		run $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			linux-source-6.1 bc flex bison libelf-dev libssl-dev build-essential xz-utils
		echo "6.1: /usr/src/linux-source-6.1.tar.xz"
	fi
fi

if [ -z "$ONLY" ] || [ "$ONLY" = 6.12 ]; then
	out="$CACHE/debs/usr/src/linux-source-6.12.tar.xz"
	if [ -f "$out" ]; then
		echo "6.12: $out (already fetched)"
		exit 0
	fi
	apt_dir="$CACHE/apt-trixie"
	run mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$CACHE/debs"
	if [ "$DRY" = 0 ]; then
		# Same keyring as the system's Debian sources: trixie is signed by the
		# Debian archive keys shipped in debian-archive-keyring.
		printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' \
			"$MIRROR" > "$apt_dir/sources.list"
	fi
	# Options that point apt at the private directory only (no sources.list.d, no
	# system lists, no system cache); -o APT::Get::List-Cleanup keeps it from touching
	# anything else.
	apt_opts=(
		-o "Dir::Etc::sourcelist=$apt_dir/sources.list"
		-o "Dir::Etc::sourceparts=-"
		-o "Dir::State::Lists=$apt_dir/lists"
		-o "Dir::State::status=/dev/null"
		-o "Dir::Cache=$apt_dir"
		-o "Dir::Cache::archives=$apt_dir/archives"
		-o "APT::Get::List-Cleanup=0"
		-o "Debug::NoLocking=1"
		-o "APT::Sandbox::User=root"
	)
	run apt-get "${apt_opts[@]}" update -q
	# apt-get download writes into the current directory.
	if [ "$DRY" = 0 ]; then
		cd "$apt_dir/archives"
		ver=$(apt-cache "${apt_opts[@]}" show linux-source-6.12 2>/dev/null |
			sed -n 's/^Version: //p' | head -1)
		[ -n "$ver" ] || { echo "6.12: trixie has no linux-source-6.12 package" >&2; exit 1; }
		echo "+ apt-get download linux-source-6.12=$ver"
		apt-get "${apt_opts[@]}" download "linux-source-6.12=$ver"
		deb=$(ls -t "$apt_dir"/archives/linux-source-6.12_*.deb | head -1)
		echo "+ dpkg-deb -x $deb $CACHE/debs"
		dpkg-deb -x "$deb" "$CACHE/debs"
		rm -f "$deb"
		echo "$ver" > "$CACHE/debs/linux-source-6.12.version"
	else
		echo "+ apt-get ${apt_opts[*]} download linux-source-6.12"
		echo "+ dpkg-deb -x linux-source-6.12_*.deb $CACHE/debs"
	fi
	echo "6.12: $out"
fi
