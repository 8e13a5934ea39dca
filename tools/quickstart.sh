#!/usr/bin/env bash
# Quick start: from a fresh Debian 12 / Ubuntu 22.04+ checkout of reef_rocm to the table of DISB
# workload A under the main scheduling policies, in one command:
#
#   bash tools/quickstart.sh
#
# Installs what is missing (python3-venv, a C compiler for the launch extension; apt), makes a
# virtual environment (.cache/venv), installs reef_rocm with matplotlib and tqdm, then:
# - with an NVIDIA GPU (nvidia-smi) or an AMD GPU (/dev/kfd + rocminfo): installs the GPU
#   bindings and the compiler (stock Apache TVM from PyPI), compiles VGG-19 and ResNet-152 for the
#   card (a few minutes the first time, cached after), and runs DISB A on the GPU;
# - otherwise: runs DISB A on the simulated GPU (`sim`), whose kernels replay per-kernel times
#   profiled on an H200 (docs/results/profiles); every line it prints says [simulated].
# Results (JSON + PNG figures) go to $OUT (default .cache/quickstart/, ignored by git).
#
# Environment: OUT, DURATION (seconds per run, default 3), POLICIES, BACKEND (auto|cuda|hip|sim),
# REEF_VENV (default .cache/venv), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.cache/quickstart}
DURATION=${DURATION:-3}
POLICIES=${POLICIES:-rt-only,sequential,streams,priority-streams,reset,reset+poll,reset+kill}
BACKEND=${BACKEND:-auto}
VENV=${REEF_VENV:-.cache/venv}
PY3=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

tag=""
say() { echo "${tag}quickstart: $*" >&2; }
# installer output, prefixed like every other line (on the sim: "[simulated] ")
quiet() { "$@" 2>&1 | sed -u "s/^/${tag}/" >&2; return "${PIPESTATUS[0]}"; }

# ---- which GPU, if any -------------------------------------------------------------------------
extras=""
target=""
backend=sim
if [ "$BACKEND" != sim ]; then
	if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 &&
		[ "$BACKEND" != hip ]; then
		cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')
		extras="cuda,compiler"
		target="cuda:sm_$cap"
		backend=cuda
	elif [ -e /dev/kfd ] && command -v rocminfo >/dev/null && [ "$BACKEND" != cuda ]; then
		gfx=$(rocminfo | grep -o -m1 'gfx[0-9a-f]*' || true)
		rocm_version=$(cat /opt/rocm/.info/version 2>/dev/null | cut -d- -f1 || true)
		extras="compiler"
		target="rocm:$gfx"
		backend=hip
	fi
fi
case "$target" in
"" | cuda:sm_90 | cuda:sm_80 | rocm:gfx906 | rocm:gfx908 | rocm:gfx90a | rocm:gfx942) ;;
*)
	say "found a GPU ($target) the model compiler has no target for; using the simulated GPU"
	extras="" target="" backend=sim ;;
esac
[ "$backend" = sim ] && tag="[simulated] "

# ---- system packages (only what is missing) ---------------------------------------------------
apt_pkgs=()
command -v "$PY3" >/dev/null || apt_pkgs+=(python3)
"$PY3" -c 'import venv, ensurepip' 2>/dev/null || apt_pkgs+=(python3-venv)
command -v gcc >/dev/null || apt_pkgs+=(gcc)
"$PY3" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
	2>/dev/null || apt_pkgs+=(python3-dev)
if ((${#apt_pkgs[@]})); then
	say "installing ${apt_pkgs[*]} (apt)"
	quiet $SUDO apt-get update -qq
	quiet $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${apt_pkgs[@]}"
fi

# ---- Python environment ------------------------------------------------------------------------
[ -x "$VENV/bin/python" ] || quiet "$PY3" -m venv "$VENV"
PY=$VENV/bin/python
quiet "$PY" -m pip install -q --upgrade pip
spec="."
[ -n "$extras" ] && spec=".[$extras]"
say "installing reef_rocm ($spec) with matplotlib and tqdm into $VENV"
quiet "$PY" -m pip install -q -e "$spec" matplotlib tqdm
if [ "$backend" = hip ]; then
	# hip-python follows ROCm's version numbers: the one matching this ROCm (docs/hip_backend.md)
	quiet "$PY" -m pip install -q "hip-python==${rocm_version:?cannot read /opt/rocm/.info/version}.*"
fi

# ---- models and the run ------------------------------------------------------------------------
args=(A --policies "$POLICIES" --duration "$DURATION" --warmup 0.5 --out "$OUT")
if [ "$backend" = sim ]; then
	say "no usable GPU: running on the simulated GPU (every line below says [simulated])"
	args+=(--backend sim)
else
	say "compiling vgg19 and resnet152 for $target (cached after the first time)"
	"$PY" -m reef_rocm.cli compile vgg19 resnet152 --target "$target" --out "$OUT/packages" \
		--variants plain,preemptible
	args+=(--backend "$backend" --packages "$OUT/packages")
fi
[ "$backend" = sim ] || "$PY" -m reef_rocm.cli doctor || true
"$PY" -m reef_rocm.cli bench disb "${args[@]}"
say "done: results JSON and figures in $OUT/ (redraw with: $PY -m reef_rocm.cli bench plot FILE)"
