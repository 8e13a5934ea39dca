// Small CUDA kernels with known resource use, compiled by tests/codeobj for sm_80 and sm_90.
extern "C" __global__ void __launch_bounds__(256) co_saxpy(float a, const float* x, float* y,
                                                           int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

extern "C" __global__ void co_smem_reduce(const float* x, float* out) {
  __shared__ float buf[2048];
  buf[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = buf[0];
}

extern "C" __global__ void co_dynamic_smem(float* out) {
  extern __shared__ float d[];
  d[threadIdx.x] = threadIdx.x;
  __syncthreads();
  out[threadIdx.x] = d[blockDim.x - 1 - threadIdx.x];
}

// A dynamically indexed array too large for registers: lives on the stack (local memory).
extern "C" __global__ void co_local(const int* idx, float* out) {
  float local[512];
  for (int i = 0; i < 512; ++i) local[i] = i * out[i];
  out[threadIdx.x] = local[idx[threadIdx.x] & 511];
}

extern "C" __global__ void __maxnreg__(32) co_maxnreg(float* o) { o[threadIdx.x] = 1.f; }

// Many live values: registers limit occupancy.
extern "C" __global__ void co_many_regs(const float4* in, float4* out) {
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

__device__ __noinline__ int co_rec(int n, const int* p) {
  return n <= 0 ? p[0] : p[n & 7] + co_rec(n - 1, p);
}
extern "C" __global__ void co_recursive(int* p) { p[threadIdx.x] = co_rec(p[0], p); }
