#!/usr/bin/env bash
# Build, on the dev machine, everything the GPU host needs but cannot make itself (it has no
# network and no TVM), into the ignored folder .carry/:
#   wheels/     cuda-bindings, pyelftools, msgpack, pytest for the host's Python (3.12)
#   packages/   the model zoo compiled for the host's GPU (+ an ONNX model from PyTorch)
#   transform/  prebuilt preemptible-kernel fixtures for the transform GPU tests and bench
#   dkp/        dispatcher builds (padded launches) of zoo kernel pairs
#   GIT_COMMIT  the commit the results are recorded against
# Then: device run with carry [.carry/wheels, .carry/packages, .carry/transform,
# .carry/dkp, .carry/GIT_COMMIT] and `bash tools/run_gpu.sh doctor tests storm disb`.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${TARGET:-cuda:sm_90}
PYVER=${PYVER:-3.12}
mkdir -p .carry/wheels .carry/packages .carry/onnx
git rev-parse HEAD >.carry/GIT_COMMIT

python3 -m pip download -q -d .carry/wheels --only-binary=:all: --python-version "$PYVER" \
	--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
	--platform manylinux_2_17_x86_64 cuda-bindings==13.0.3 cuda-pathfinder pyelftools \
	msgpack pytest grpcio==1.85.3 protobuf==7.36.2 tqdm

python3 -m reef_rocm.cli compile --zoo --target "$TARGET" --out .carry/packages
if python3 -c "import torch" 2>/dev/null; then
	python3 - <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "tests/compiler")
from test_user_models import make_onnx
make_onnx(Path(".carry/onnx/small_net_onnx.onnx"))
PY
	python3 -m reef_rocm.cli compile .carry/onnx/small_net_onnx.onnx --target "$TARGET" \
		--out .carry/packages
fi
python3 tools/build_transform_fixtures.py .carry/transform
# padded-launch (DKP) builds of zoo pairs for tests/dkp/test_dkp_gpu.py and tools/bench_dkp.py
python3 tools/build_dkp_carry.py --bench
du -sh .carry/*
