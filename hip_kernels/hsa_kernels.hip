// Kernels for the HSA queue manager: the kernarg-layout test compiles them offline, and
// tools/validate-hsa.py runs them on an AMD GPU through our own AQL queues.
#include <hip/hip_runtime.h>

// out[i] = a * x[i] + b for i < n; reads blockDim (a code object v5 hidden argument).
extern "C" __global__ void hsa_axpb(float a, const float* x, float b, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a * x[i] + b;
}

// Spins until *flag != 0 or `spins` rounds pass; counts the blocks that started. The
// validation script keeps it running to fill the queue, then resets the queue.
extern "C" __global__ void hsa_spin(volatile int* flag, int* started, long long spins) {
  if (threadIdx.x == 0) atomicAdd(started, 1);
  for (long long k = 0; k < spins && *flag == 0; ++k) __builtin_amdgcn_s_sleep(2);
}

// Writes HW_ID (SE, SH, CU of the wave) and, on gfx94x, XCC_ID of every block's first wave,
// so the validation script can check where a CU-masked queue ran: out[2 * block + {0, 1}].
extern "C" __global__ void hsa_where(unsigned* out) {
  if (threadIdx.x != 0) return;
  unsigned hw_id, xcc_id = 0;
  asm volatile("s_getreg_b32 %0, hwreg(HW_REG_HW_ID)" : "=s"(hw_id));
#if defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__)
  asm volatile("s_getreg_b32 %0, hwreg(HW_REG_XCC_ID)" : "=s"(xcc_id));
#endif
  out[2 * blockIdx.x] = hw_id;
  out[2 * blockIdx.x + 1] = xcc_id;
}
