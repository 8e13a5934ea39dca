#!/usr/bin/env bash
# Runs reef_rocm's GPU work on an NVIDIA GPU host with no network (the `device` machine):
# installs the wheels carried in .carry/wheels for the host's Python, then runs the stages
# asked for and leaves results in $OUT (or ./gpu-out). Stages:
#   doctor  reef doctor (human and --json)
#   tests   pytest -m gpu over the GPU test files (or those named in GPU_TESTS)
#   launch  launch-cost benchmark (tools/bench_launch.py)
#   models  model-zoo benchmark (reef_rocm.runtime.bench) over packages in .carry/packages
#   poll    in-kernel preemption-point trade-off (tools/bench_poll_interval.py)
# Prepare on the dev machine: tools/prepare_gpu_carry.sh; then on the GPU host:
#   bash tools/run_gpu.sh doctor tests launch
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
# short card name for result files (models_h200.json, ...): from nvidia-smi unless given
CARD_TAG=${CARD_TAG:-$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 |
	grep -oiE '[A-Z][0-9]{2,4}' | head -1 | tr 'A-Z' 'a-z')}
CARD_TAG=${CARD_TAG:-gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -f .carry/GIT_COMMIT ] && export REEF_GIT_COMMIT=$(cat .carry/GIT_COMMIT)
export PATH=$PATH:/usr/local/cuda/bin

# cuda-bindings only from the carried wheels: the host has no network.
$PY -m pip install -q --no-index --find-links .carry/wheels cuda-bindings pyelftools msgpack \
	pytest 2>&1 | grep -v -e WARNING -e 'already satisfied' || true

# The C launcher (reef_rocm/gpu/_fastlaunch.c) for this host's Python; without it launches
# fall back to the bindings path and the launch benchmark says so.
inc=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$($PY -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
if [ -f "$inc/Python.h" ]; then
	gcc -O2 -shared -fPIC -I"$inc" -o "reef_rocm/gpu/_fastlaunch$suffix" \
		reef_rocm/gpu/_fastlaunch.c || echo "C launcher build failed" >&2
else
	echo "no Python.h for $PY: C launcher not built" >&2
fi

status=0
for stage in "${@:-doctor tests launch}"; do
	case $stage in
	doctor)
		$PY -m reef_rocm.cli doctor
		$PY -m reef_rocm.cli doctor --json >"$OUT/doctor.json" ;;
	tests)
		tests=${GPU_TESTS:-$(grep -l 'mark.gpu' -r tests --include='test_*.py' | sort)}
		# shellcheck disable=SC2086
		$PY -m pytest -m gpu -q -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" $tests \
			2>&1 | tee "$OUT/gpu-tests.log" | tail -n 40
		[ "${PIPESTATUS[0]}" = 0 ] || status=1 ;;
	launch)
		$PY tools/bench_launch.py --out "$OUT/launch_cost_$CARD_TAG.json" || status=1 ;;
	models)
		# per-kernel profiles too: the scheduler's device-queue cap and the sim replay use them
		$PY -m reef_rocm.runtime.bench --packages .carry/packages \
			--out "$OUT/models_$CARD_TAG.json" --profile-dir "$OUT/profiles" || status=1 ;;
	poll)
		$PY tools/bench_poll_interval.py --fixtures .carry/transform \
			--out "$OUT/poll_interval_$CARD_TAG.json" || status=1 ;;
	*)
		echo "unknown stage $stage" >&2; status=2 ;;
	esac
done
exit $status
