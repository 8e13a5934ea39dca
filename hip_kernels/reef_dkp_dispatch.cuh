// Dynamic kernel padding (DKP): the dispatcher kernel, one source for CUDA (nvcc) and HIP
// (hipcc, AMD). Design and numbering: docs/dkp.md.
//
// A padded launch is one grid of persistent blocks. Each block reads the hardware id of the
// SM/CU it landed on and looks it up in `cu_side` (built by the host from the device, never a
// hard-coded CU count): RT-side blocks take virtual blocks of the real-time kernel, BE-side
// blocks take virtual blocks of the best-effort kernel, one at a time, from atomic counters
// (persistent threads). Kernel bodies are device functions called through the global table
// `reef_dkp_bodies` (indirect calls); the translation unit that includes this header defines
// the table and REEF_DKP_NUM_BODIES before the include (reef_rocm/dkp/build.py generates it).
//
// Guarantees the host relies on:
// * every RT virtual block runs exactly once per launch: BE-side blocks that run out of BE
//   work (or are told to stop) take RT work too, so the RT kernel completes even if the
//   hardware put no block on an RT CU;
// * BE virtual blocks are handed out once across launches from the persistent cursor
//   `be_next` (zeroed by the host with the BE kernel's slot; it never passes `be_count`, the
//   limit of this launch), so consecutive padded launches continue one BE kernel; a fetched
//   BE block always runs to its end, so after a launch *be_slot == *be_next and the
//   completed BE blocks are exactly [be_begin, be_begin + *be_slot) (exact restore at
//   virtual-block granularity, unless waves were killed);
// * BE-side blocks stop taking BE work when the preempt flag is set or when the RT kernel's
//   last virtual block finished, so a padded launch outlives its RT kernel by at most one
//   BE virtual block;
// * the per-launch RT counters reset themselves: the last block to leave zeroes them.
#pragma once

#if defined(__HIP__) || defined(__HIP_PLATFORM_AMD__) || defined(__HIP_PLATFORM_HCC__)
#define REEF_DKP_AMD 1
#include <hip/hip_runtime.h>
#else
#define REEF_DKP_AMD 0
#endif

#ifndef REEF_DKP_NUM_BODIES
#error "define REEF_DKP_NUM_BODIES and the reef_dkp_bodies table before including this header"
#endif

// A kernel body: run virtual block `vblock` of one kernel with this block's threads.
// `args` is the kernel's argument struct (packed by the host once), `smem` the block's
// dynamic shared memory / LDS.
typedef void (*reef_dkp_body_t)(const unsigned char* args, int vblock, unsigned char* smem);

extern "C" __device__ reef_dkp_body_t reef_dkp_bodies[REEF_DKP_NUM_BODIES];

// The register budget of a proxy class. NVIDIA: the build passes -maxrregcount (every
// function of the code object). AMD has no such flag; the build defines REEF_DKP_VGPRS and the
// dispatcher kernel carries amdgpu_num_vgpr (LLVM gives indirectly called functions the
// registers the calling kernel allows).
#if REEF_DKP_AMD && defined(REEF_DKP_VGPRS)
#define REEF_DKP_BUDGET __attribute__((amdgpu_num_vgpr(REEF_DKP_VGPRS)))
#else
#define REEF_DKP_BUDGET
#endif

// Per-launch counters (zeroed by the host once, then by the last block of every launch).
struct reef_dkp_work {
  unsigned rt_next;  // next RT virtual block to hand out
  unsigned rt_done;  // RT virtual blocks finished
  unsigned exited;   // blocks of this launch that left
  unsigned pad;
};

// Hardware id of the SM/CU this wave runs on, as indexed in `cu_side`.
// NVIDIA: %smid (not guaranteed contiguous; %nsmid bounds it). AMD gfx9: HW_ID (hwreg 4)
// bits [15:8] = CU_ID[11:8] | SH_ID[12] | SE_ID[15:13] (gfx906: SE_ID is [14:13]);
// gfx940/941/942 add XCC_ID (hwreg 20, bits [3:0]) as bits [11:8] of the id.
__device__ __forceinline__ unsigned reef_dkp_hw_id() {
#if REEF_DKP_AMD
#if defined(__gfx906__)
  unsigned id = __builtin_amdgcn_s_getreg(4 | (8 << 6) | ((7 - 1) << 11));
#else
  unsigned id = __builtin_amdgcn_s_getreg(4 | (8 << 6) | ((8 - 1) << 11));
#endif
#if defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__)
  id |= __builtin_amdgcn_s_getreg(20 | (0 << 6) | ((4 - 1) << 11)) << 8;
#endif
  return id;
#else
  unsigned id;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
  return id;
#endif
}

__device__ __forceinline__ unsigned reef_dkp_load(const unsigned* p) {
  return *(const volatile unsigned*)p;  // L2-coherent read (ld.volatile / glc)
}

// Run RT virtual blocks [rt_begin, rt_begin + rt_count) of body rt_fn and, on BE CUs, BE
// virtual blocks [be_begin, be_begin + be_count) of body be_fn. Launch: 1-D grid of
// persistent blocks (enough to fill the device at this kernel's occupancy), 1-D block of the
// callees' thread count, dynamic shared memory = the larger callee's.
__device__ __forceinline__ void reef_dkp_dispatch(
    int rt_fn, const unsigned char* rt_args, int rt_begin, int rt_count,
    int be_fn, const unsigned char* be_args, int be_begin, int be_count,
    unsigned* be_next, unsigned* be_slot, const int* preempt_flag,
    reef_dkp_work* work, const unsigned char* cu_side, int cu_side_len,
    unsigned char* smem) {
  __shared__ int s_vb;
  __shared__ int s_rt;
  const bool rt_cu = [&] {
    unsigned id = reef_dkp_hw_id();
    return id < (unsigned)cu_side_len && cu_side[id] != 0;
  }();
  for (;;) {
    if (threadIdx.x == 0) {
      int vb = -1;
      int rt = 1;
      if (!rt_cu && be_count > 0 && *(const volatile int*)preempt_flag == 0 &&
          reef_dkp_load(&work->rt_done) < (unsigned)rt_count) {
        // compare-and-swap, not fetch-and-add: the cursor never passes be_count, so a later
        // launch with a higher limit continues exactly where this one stopped
        unsigned b = reef_dkp_load(be_next);
        while (b < (unsigned)be_count) {
          unsigned seen = atomicCAS(be_next, b, b + 1u);
          if (seen == b) break;
          b = seen;
        }
        if (b < (unsigned)be_count) {
          vb = be_begin + (int)b;
          rt = 0;
        }
      }
      if (vb < 0) {  // RT CU, or no BE work left for this block: RT work is never left over
        unsigned r = atomicAdd(&work->rt_next, 1u);
        if (r < (unsigned)rt_count) vb = rt_begin + (int)r;
      }
      s_vb = vb;
      s_rt = rt;
    }
    __syncthreads();
    const int vb = s_vb;
    const int rt = s_rt;
    if (vb < 0) break;
    reef_dkp_bodies[rt ? rt_fn : be_fn](rt ? rt_args : be_args, vb, smem);
    __syncthreads();  // every thread finished the body (and may reuse s_vb / smem)
    if (threadIdx.x == 0) {
      __threadfence();  // the block's writes are visible before it is counted
      atomicAdd(rt ? &work->rt_done : be_slot, 1u);
    }
  }
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(&work->exited, 1u) == gridDim.x - 1) {  // the last block: reset for the next launch
      work->rt_next = 0;
      work->rt_done = 0;
      work->exited = 0;
      __threadfence();
    }
  }
}

// The kernel the host launches (one per code object; each code object of a build is one
// proxy class, compiled with its own register budget).
extern "C" __global__ void REEF_DKP_BUDGET reef_dkp_dispatch_kernel(
    int rt_fn, const unsigned char* rt_args, int rt_begin, int rt_count,
    int be_fn, const unsigned char* be_args, int be_begin, int be_count,
    unsigned* be_next, unsigned* be_slot, const int* preempt_flag,
    reef_dkp_work* work, const unsigned char* cu_side, int cu_side_len) {
#if REEF_DKP_AMD
  HIP_DYNAMIC_SHARED(unsigned char, reef_dkp_smem)
#else
  extern __shared__ __align__(128) unsigned char reef_dkp_smem[];
#endif
  reef_dkp_dispatch(rt_fn, rt_args, rt_begin, rt_count, be_fn, be_args, be_begin, be_count,
                    be_next, be_slot, preempt_flag, work, cu_side, cu_side_len, reef_dkp_smem);
}

// Where blocks land: block b writes the hardware id of its SM/CU. The host launches it with
// many blocks once per device to learn which ids exist (numbering has holes: harvested
// CUs on AMD, non-contiguous %smid on NVIDIA).
extern "C" __global__ void reef_dkp_probe_hw_ids(unsigned* out) {
  if (threadIdx.x == 0) out[blockIdx.x] = reef_dkp_hw_id();
}

// One body through the table, one virtual block per block of a plain grid, no dispatcher
// logic: against the package's own kernel this isolates the cost of the indirect call
// (tools/bench_dkp.py, the paper's Fig. 16).
extern "C" __global__ void REEF_DKP_BUDGET reef_dkp_indirect_kernel(int fn, const unsigned char* args, int begin) {
#if REEF_DKP_AMD
  HIP_DYNAMIC_SHARED(unsigned char, reef_dkp_smem)
#else
  extern __shared__ __align__(128) unsigned char reef_dkp_smem[];
#endif
  reef_dkp_bodies[fn](args, begin + (int)blockIdx.x, reef_dkp_smem);
}
