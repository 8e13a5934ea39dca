#!/usr/bin/env bash
# Runs reef_rocm's GPU work on an NVIDIA GPU host with no network (the `device` machine):
# installs the wheels carried in .carry/wheels for the host's Python, then runs the stages
# asked for and leaves results in $OUT (or ./gpu-out). Stages:
#   doctor  reef doctor (human and --json)
#   tests   pytest -m gpu over the GPU test files (or those named in GPU_TESTS)
#   launch  launch-cost benchmark (tools/bench_launch.py)
#   models  model-zoo benchmark (reef_rocm.runtime.bench) over packages in .carry/packages
#   poll    in-kernel preemption-point trade-off (tools/bench_poll_interval.py)
#   storm   >= 10,000 preemptions through the scheduler, every BE output checked
#   server  reef serve + client processes vs in-process scheduler (tools/bench_server.py)
#   disb    every DISB workload under every policy (reef bench disb all)
#   breakdown  preemption latency split into host and device parts (tools/preempt_breakdown.py)
#   torch   the zoo in PyTorch, eager and CUDA graph (tools/bench_torch_zoo.py)
#   tune    time every tuning bundle in TUNE_BUNDLES (default .carry/tune/round*) with
#           `reef tune measure` (docs/tuning.md, batch mode); TUNE_MINUTES caps each
# PACKAGES (default .carry/packages) names the model packages the stages use.
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
# the server's generated gRPC code needs grpcio >= 1.85.1 and protobuf 7; tqdm for progress bars
$PY -m pip install -q --no-index --find-links .carry/wheels grpcio==1.85.3 protobuf==7.36.2 \
	tqdm 2>&1 | grep -v -e WARNING -e 'already satisfied' || true
PACKAGES=${PACKAGES:-.carry/packages}

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
		$PY -m reef_rocm.runtime.bench --packages "$PACKAGES" \
			--out "$OUT/models_$CARD_TAG.json" --profile-dir "$OUT/profiles" || status=1 ;;
	poll)
		$PY tools/bench_poll_interval.py --fixtures .carry/transform \
			--out "$OUT/poll_interval_$CARD_TAG.json" || status=1 ;;
	storm)
		$PY tools/preempt_storm.py --backend cuda --packages "$PACKAGES" --rt tiny_cnn \
			--be resnet152,densenet201,inception_v3 --preemptions 10000 \
			--out "$OUT/preempt_storm_$CARD_TAG.json" 2>&1 | tail -n 30
		[ "${PIPESTATUS[0]}" = 0 ] || status=1 ;;
	breakdown)
		# where preemption latency goes, inputs preloaded vs uploaded per request
		$PY tools/preempt_breakdown.py --backend cuda --packages "$PACKAGES" --rt tiny_cnn \
			--be resnet152 --out "$OUT/preempt_breakdown_${CARD_TAG}_tiny_cnn.json" || status=1
		$PY tools/preempt_breakdown.py --backend cuda --packages "$PACKAGES" --rt vgg19 \
			--be resnet152 --interval-ms 10 \
			--out "$OUT/preempt_breakdown_${CARD_TAG}_vgg19.json" || status=1 ;;
	tune)
		for b in ${TUNE_BUNDLES:-.carry/tune/round*}; do
			[ -f "$b/index.json" ] || continue
			$PY -m reef_rocm.cli tune measure "$b" --minutes "${TUNE_MINUTES:-8}" \
				--out "$OUT/tune_$(basename "$b")_$CARD_TAG.json" 2>&1 | tail -n 5
			[ "${PIPESTATUS[0]}" = 0 ] || status=1
		done ;;
	torch)
		# the zoo's graphs in PyTorch (eager, CUDA graph): issue 15's comparison column
		$PY tools/bench_torch_zoo.py --out "$OUT/torch_zoo_$CARD_TAG.json" || status=1 ;;
	server)
		$PY tools/bench_server.py --backend cuda --packages "$PACKAGES" --rt vgg19 \
			--be resnet152 --duration "${SERVER_DURATION:-30}" \
			--out "$OUT/server_overhead_$CARD_TAG.json" 2>&1 | tail -n 30
		[ "${PIPESTATUS[0]}" = 0 ] || status=1 ;;
	disb)
		# shellcheck disable=SC2086
		$PY -m reef_rocm.cli bench disb ${DISB_WORKLOADS:-all} --backend cuda \
			--packages "$PACKAGES" --out "$OUT/disb_$CARD_TAG" ${DISB_ARGS:-} 2>&1 | tail -n 80
		[ "${PIPESTATUS[0]}" = 0 ] || status=1 ;;
	*)
		echo "unknown stage $stage" >&2; status=2 ;;
	esac
done
exit $status
