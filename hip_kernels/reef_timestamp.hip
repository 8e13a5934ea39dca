// The scheduler's device timestamp kernel for AMD GPUs (gfx9: gfx906 .. gfx942).
// One thread stores the GPU's constant-rate "real time" counter (s_memrealtime, 100 MHz on
// gfx9, the clock hipDeviceAttributeWallClockRate reports) converted to nanoseconds. It is
// launched ahead of the work whose start it marks (reef_rocm/sched/devclock.py); the CUDA
// twin is the PTX in that file (%globaltimer). Not built or run yet: no AMD GPU here.
//   hipcc --genco --offload-arch=gfx90a -O3 -o reef_timestamp-gfx90a.hsaco reef_timestamp.hip
// then point REEF_TIMESTAMP_HSACO at the code object.
#include <hip/hip_runtime.h>

extern "C" __global__ void reef_timestamp(unsigned long long *out)
{
	unsigned long long ticks = __builtin_amdgcn_s_memrealtime();

	*out = ticks * 10ull; // 100 MHz -> ns
}
