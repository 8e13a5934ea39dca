// Kernel for tools/validate-kfd-patch.sh: every work-item runs a 32-bit LCG for
// `iters` steps from a seed derived from its global id and stores the result. The host
// checks every result with an O(log iters) jump-ahead, so a wave that was killed,
// restarted or resumed wrongly shows up as a wrong or missing value.
#include <hip/hip_runtime.h>
#include <stdint.h>

#define LCG_A 1664525u
#define LCG_C 1013904223u
#define WG 256 /* the dispatch's work-group size (reef_validate.c) */

// The packet is built by hand with zeroed hidden arguments, so the kernel must not read
// blockDim (code object v5 takes it from the hidden arguments): WG is a constant.
extern "C" __global__ void __launch_bounds__(WG) spin(uint32_t *out, uint32_t iters,
						     uint32_t seed)
{
	uint32_t gid = blockIdx.x * WG + threadIdx.x;
	uint32_t x = seed ^ (gid * 2654435761u);

	for (uint32_t i = 0; i < iters; i++)
		x = x * LCG_A + LCG_C;
	out[gid] = x;
}
