// Small kernels with known resource use, compiled by tests/codeobj for gfx906/gfx908/gfx90a:
// one each that uses LDS, scratch, many VGPRs, AGPRs (MFMA) and a launch bound.
#include <hip/hip_runtime.h>

extern "C" __global__ void __launch_bounds__(256) co_saxpy(float a, const float* x, float* y,
                                                           int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

extern "C" __global__ void co_lds_reduce(const float* x, float* out) {
  __shared__ float buf[2048];
  buf[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
}

extern "C" __global__ void co_scratch(const int* idx, float* out) {
  volatile float local[96];
  for (int i = 0; i < 96; ++i) local[i] = i * out[i];
  out[threadIdx.x] = local[idx[threadIdx.x] % 96];
}

// Many live values: pushes the VGPR count up so that registers limit occupancy.
extern "C" __global__ void __launch_bounds__(128) co_many_vgprs(const float4* in, float4* out) {
  float4 acc[24];
#pragma unroll
  for (int i = 0; i < 24; ++i) acc[i] = in[threadIdx.x + i * 128];
#pragma unroll
  for (int k = 0; k < 8; ++k)
#pragma unroll
    for (int i = 0; i < 24; ++i) {
      acc[i].x = acc[i].x * acc[(i + k) % 24].y + acc[i].w;
      acc[i].y = acc[i].y * acc[(i + 3 * k) % 24].z + acc[i].x;
    }
  float4 s = acc[0];
#pragma unroll
  for (int i = 1; i < 24; ++i) { s.x += acc[i].x; s.y += acc[i].y; s.z += acc[i].z; s.w += acc[i].w; }
  out[threadIdx.x] = s;
}

#if defined(__gfx908__) || defined(__gfx90a__)
typedef float floatx16 __attribute__((ext_vector_type(16)));
// MFMA accumulates in AGPRs on gfx908/gfx90a.
extern "C" __global__ void __launch_bounds__(64) co_mfma(const float* a, const float* b, float* c) {
  floatx16 acc = {0};
  for (int k = 0; k < 4; ++k)
    acc = __builtin_amdgcn_mfma_f32_32x32x2f32(a[threadIdx.x + k], b[threadIdx.x + k], acc, 0, 0, 0);
  for (int i = 0; i < 16; ++i) c[threadIdx.x * 16 + i] = acc[i];
}
#endif
