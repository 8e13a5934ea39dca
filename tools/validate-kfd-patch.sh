#!/bin/bash
# Hardware validation of the REEF kfd patch on an AMD Instinct GPU (MI100/MI200/MI300),
# for a user who installed it with tools/install-kfd-patch.sh. Nothing in this repository
# has run it yet: docs/kfd_patch.md says what it checks and what is still unverified.
#
# Two processes on one GPU:
#   victim    another process: back-to-back long dispatches, every result checked
#   attacker  resets its own work while the victim runs:
#     1. process: RESET_QUEUES with F_PROCESS while the first of three dispatches runs
#     2. queues:  a BE queue and an RT queue busy; RESET_QUEUES of the BE queue only
#   In each the attacker checks: write index == read index, the two waiting dispatches
#   never run, the running one is cut short, (2) the RT dispatch completes correctly,
#   and the reset queue then runs a new dispatch correctly. The victim's results must
#   all stay correct (its waves survive the attacker's resets).
#
# Usage: tools/validate-kfd-patch.sh [--gpu-id ID] [--iters N] [--reps N] [--out DIR]
#   --gpu-id  KFD gpu_id (default: the first GPU whose QUERY offers reset_queues)
#   --iters   LCG steps per work-item (default 134217728: several seconds per dispatch on
#             an MI250; raise it if the attacker reports the dispatch finished too early)
#   --reps    victim dispatches (default 6; they must outlast both attacker runs)
#   --out     work directory (default a new temp dir); results JSON goes to
#             docs/results/kfd-validate-<gpu>-<date>.json
# Env: ROCM_PATH (default /opt/rocm), HIPCC (default $ROCM_PATH/bin/hipcc).
# Exit: 0 every check passed, 1 a check failed, 2 setup error (no patch, no GPU, no tools).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=$ROOT/tools/kfd-validate
ROCM=${ROCM_PATH:-/opt/rocm}
HIPCC=${HIPCC:-$ROCM/bin/hipcc}
GPU_ID=""
ITERS=134217728
REPS=6
OUT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--gpu-id) GPU_ID=$2; shift 2 ;;
	--iters) ITERS=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
	*) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
	esac
done
die() { echo "validate-kfd-patch: $*" >&2; exit 2; }
say() { echo "[validate-kfd-patch] $*"; }
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# 1. the patch answers for a real GPU; pick the GPU, its gfx name and its HSA index
python3 -m reef_rocm.rocm.kfd --require-patch --require-gpu ||
	die "the REEF kfd patch is not loaded or does not answer (tools/install-kfd-patch.sh)"
info=$(python3 - "$GPU_ID" <<'EOF'
import sys
from reef_rocm.rocm import kfd
want = int(sys.argv[1]) if sys.argv[1] else None
st = kfd.kfd_status()
for index, node in enumerate(kfd.topology_gpus()):
    g = st.gpus.get(node.gpu_id)
    if g is None or (want is not None and node.gpu_id != want):
        continue
    if want is None and "reset_queues" not in g.supported_ops:
        continue
    v = g.gfx_target_version  # e.g. 90010 -> gfx90a
    arch = f"gfx{v // 10000}{(v // 100) % 100:x}{v % 100:x}"
    print(node.gpu_id, index, arch, g.sched_policy, ",".join(g.supported_ops) or "-")
    break
EOF
)
[ -n "$info" ] || die "no GPU offers reset_queues${GPU_ID:+ (gpu_id $GPU_ID)}; see" \
	"'python3 -m reef_rocm.rocm.kfd'"
read -r GPU_ID INDEX ARCH SCHED OPS <<< "$info"
say "gpu_id $GPU_ID (HSA GPU index $INDEX, $ARCH, sched $SCHED, ops $OPS)"
case ",$OPS," in *,reset_process,*) ;; *) die "gpu_id $GPU_ID does not offer reset_process" ;; esac

# 2. build the kernel and the test program
[ -x "$HIPCC" ] || die "no hipcc at $HIPCC (set ROCM_PATH or HIPCC)"
command -v gcc > /dev/null || die "no gcc"
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/reef-validate.XXXXXX)
mkdir -p "$OUT"
say "building in $OUT"
"$HIPCC" --genco --offload-arch="$ARCH" -O2 "$SRC/spin.hip" -o "$OUT/spin.co" ||
	die "hipcc failed"
gcc -std=gnu11 -O2 -Wall -Wextra -I"$ROOT/kfd_patch/include/uapi" -I"$ROCM/include" \
	"$SRC/reef_validate.c" -o "$OUT/reef_validate" -L"$ROCM/lib" -lhsa-runtime64 \
	-Wl,-rpath,"$ROCM/lib" || die "gcc failed"
"$OUT/reef_validate" selftest > "$OUT/selftest.log" || die "host reference selftest failed"

# 3. victim in the background, attackers while it runs
export ROCR_VISIBLE_DEVICES=$INDEX
"$OUT/reef_validate" victim "$OUT/spin.co" "$ITERS" "$REPS" > "$OUT/victim.log" 2>&1 &
victim=$!
trap 'kill "$victim" 2> /dev/null' EXIT
for _ in $(seq 600); do
	grep -q READY "$OUT/victim.log" && break
	kill -0 "$victim" 2> /dev/null || break
	sleep 0.1
done
grep -q READY "$OUT/victim.log" || { cat "$OUT/victim.log"; die "victim did not start"; }

rc=0
for mode in process queues; do
	say "attacker: $mode"
	"$OUT/reef_validate" attacker "$OUT/spin.co" "$ITERS" "$GPU_ID" "$mode" 2>&1 |
		tee "$OUT/attacker-$mode.log"
	[ "${PIPESTATUS[0]}" = 0 ] || rc=1
done
say "waiting for the victim"
wait "$victim"
vrc=$?
trap - EXIT
cat "$OUT/victim.log"
[ "$vrc" = 0 ] || rc=1
grep -q "^VICTIM PASS" "$OUT/victim.log" || rc=1
dmesg 2> /dev/null | grep -iE 'amdgpu|kfd' | tail -20 > "$OUT/dmesg-tail.log" || true

# 4. record
python3 - "$ROOT" "$OUT" "$GPU_ID" "$ARCH" "$SCHED" "$OPS" "$ITERS" "$REPS" "$rc" <<'EOF'
import datetime
import sys
from pathlib import Path

from reef_rocm.bench.meta import write_result

root, out, gpu_id, arch, sched, ops, iters, reps, rc = sys.argv[1:]
logs = {p.stem: p.read_text() for p in sorted(Path(out).glob("*.log"))}
date = datetime.date.today().isoformat()
path = write_result(
    Path(root) / "docs" / "results" / f"kfd-validate-{arch}-{date}.json",
    {"what": "REEF kfd patch hardware validation (tools/validate-kfd-patch.sh)",
     "gpu_id": int(gpu_id), "arch": arch, "sched_policy": sched, "supported_ops": ops,
     "iters": int(iters), "reps": int(reps), "passed": rc == "0", "logs": logs},
    command="tools/validate-kfd-patch.sh " + " ".join(f"--{k} {v}" for k, v in
                                                    (("iters", iters), ("reps", reps))))
print(f"result: {path}")
EOF
if [ "$rc" = 0 ]; then
	say "PASS: every check passed on $ARCH ($SCHED)"
else
	say "FAIL: see $OUT/*.log (and $OUT/dmesg-tail.log)"
fi
exit "$rc"
