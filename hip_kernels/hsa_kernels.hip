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

// Writes the XCC, SE, SH and CU of every block (HW_ID / XCC_ID registers) so the validation
// script can check where a CU-masked queue ran.
extern "C" __global__ void hsa_where(unsigned* out) {
  if (threadIdx.x != 0) return;
  unsigned hw_id;
  asm volatile("s_getreg_b32 %0, hwreg(HW_REG_HW_ID)" : "=s"(hw_id));
  out[blockIdx.x] = hw_id;
}
