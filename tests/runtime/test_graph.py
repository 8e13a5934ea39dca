"""Launch graphs: an RT inference captured once and replayed with one call computes exactly
what the kernel-by-kernel launches compute (GPU), and a device without graphs says so (CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from reef_rocm.errors import UnsupportedError
from reef_rocm.gpu import open_device
from reef_rocm.package.files import ModelPackage
from tests.runtime.test_executor_gpu import RTOL, _paths
from tests.runtime.test_executor_gpu import dev as gpu_dev  # noqa: F401 - fixture


def test_sim_has_no_graphs_and_says_so(tmp_path):
    from reef_rocm.gpu.sim.packages import SimKernelPlan, build_sim_package
    from reef_rocm.runtime.executor import ModelInstance

    path = build_sim_package(
        tmp_path / "p", "g", [SimKernelPlan("k0", grid=4, block=64, block_time_us=2.0)],
        compute_units=4,
    )  # fmt: skip
    with open_device("sim", compute_units=4) as dev, ModelInstance(dev, path) as inst:
        assert dev.capabilities.graphs is False
        s = dev.create_stream()
        with pytest.raises(UnsupportedError, match="capability graphs is off"):
            inst.capture(s)
        with pytest.raises(ValueError, match="outside"):
            inst.capture(s, 1, 0)
        s.close()


@pytest.mark.gpu
@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.name)
def test_graph_replay_matches_launches(gpu_dev, path):  # noqa: F811
    from reef_rocm.runtime.executor import ModelInstance

    if not gpu_dev.capabilities.graphs:
        pytest.skip("device cannot capture launch graphs")
    pkg = ModelPackage.load(path)
    with ModelInstance(gpu_dev, pkg) as inst:
        for i, a in enumerate(pkg.reference_inputs()):
            inst.set_input(i, a)
        s = gpu_dev.create_stream()
        inst.launch_range(s)
        direct = inst.get_output(0, s)
        # poison the output, replay the graph twice: it must rewrite the same bits
        out_id = pkg.manifest.outputs[0]
        gpu_dev.memset32(inst.buffers[out_id], 0x7FC00000, direct.size, s)
        with inst.capture(s) as g:
            assert g.nodes == inst.num_kernels
            g.launch(s)
            g.launch(s)
            replay = inst.get_output(0, s)
        s.close()
    np.testing.assert_array_equal(replay, direct)
    ref = pkg.reference_outputs()[0]
    np.testing.assert_allclose(direct, ref, rtol=RTOL, atol=RTOL * float(np.abs(ref).max()))
