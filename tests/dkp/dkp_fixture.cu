// Two DKP-ready kernels in the shape TVM's CUDA codegen gives the dkp variant (one
// `extern "C" __global__` per kernel, a grid-stride loop over virtual blocks, fixed-size
// __shared__ arrays), with a preamble that also compiles under hipcc: the input of the DKP
// body rewrite in tests/dkp (CPU: rewrite, nvcc and hipcc builds; GPU: padded launches).
#if defined(__HIP__) || defined(__HIP_PLATFORM_AMD__) || defined(__HIP_PLATFORM_HCC__)
#include <hip/hip_runtime.h>
#endif
extern "C" __global__ void __launch_bounds__(128) fx_scale_kernel(float* __restrict__ y, float* __restrict__ x, int reef_grid_blocks, int reef_vblock_begin, int reef_vblock_count);
extern "C" __global__ void __launch_bounds__(128) fx_blocksum_kernel(float* __restrict__ out, float* __restrict__ x, int reef_grid_blocks, int reef_vblock_begin, int reef_vblock_count);
// y[vb*128 + t] = 3 x[...] + vb  (block shape 32 x 4: threadIdx.y is used)
extern "C" __global__ void __launch_bounds__(128) fx_scale_kernel(float* __restrict__ y, float* __restrict__ x, int reef_grid_blocks, int reef_vblock_begin, int reef_vblock_count) {
  for (int reef_vblock_iter = 0; reef_vblock_iter < ((reef_vblock_count + reef_grid_blocks - 1) / reef_grid_blocks); ++reef_vblock_iter) {
    int reef_vblock = ((reef_vblock_begin + ((int)blockIdx.x)) + (reef_vblock_iter * reef_grid_blocks));
    __syncthreads();
    for (int reef_run = 0; reef_run < ((reef_vblock < (reef_vblock_begin + reef_vblock_count)) ? 1 : 0); ++reef_run) {
      int i = ((reef_vblock * 128) + ((((int)threadIdx.y) * 32) + ((int)threadIdx.x)));
      y[i] = ((x[i] * 3.000000e+00f) + ((float)reef_vblock));
    }
  }
}
// out[vb] = sum of x[vb*128 .. vb*128+127] by a shared-memory tree (block 128 x 1)
extern "C" __global__ void __launch_bounds__(128) fx_blocksum_kernel(float* __restrict__ out, float* __restrict__ x, int reef_grid_blocks, int reef_vblock_begin, int reef_vblock_count) {
  __shared__ alignas(64) float red_buf[128];
  __shared__ alignas(64) float red_last[1];
  for (int reef_vblock_iter = 0; reef_vblock_iter < ((reef_vblock_count + reef_grid_blocks - 1) / reef_grid_blocks); ++reef_vblock_iter) {
    int reef_vblock = ((reef_vblock_begin + ((int)blockIdx.x)) + (reef_vblock_iter * reef_grid_blocks));
    __syncthreads();
    for (int reef_run = 0; reef_run < ((reef_vblock < (reef_vblock_begin + reef_vblock_count)) ? 1 : 0); ++reef_run) {
      red_buf[((int)threadIdx.x)] = x[((reef_vblock * 128) + ((int)threadIdx.x))];
      __syncthreads();
      for (int s = 64; s > 0; s = (s >> 1)) {
        if (((int)threadIdx.x) < s) {
          red_buf[((int)threadIdx.x)] = (red_buf[((int)threadIdx.x)] + red_buf[(((int)threadIdx.x) + s)]);
        }
        __syncthreads();
      }
      if (((int)threadIdx.x) == 0) {
        red_last[0] = red_buf[0];
        out[reef_vblock] = red_last[0];
      }
    }
  }
}
