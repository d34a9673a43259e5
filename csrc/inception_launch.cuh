// What both kernel files of the fused module share (inception_fused_fwd.cu: the forward,
// inception_fused_bwd.cu: the backward -- two translation units so that a parallel build
// compiles them at once): the GEMM core of the arch being compiled and the launch helper.
//
// Every job's products go through DeviceCore::gemm (inception_core.cuh): cp.async into a
// 3-stage ring of swizzled tiles, then mma.sync m16n8k16 from ldmatrix fragments (sm_80), or
// warpgroup MMA from shared-memory descriptors (sm_90a: each .cu file is compiled once per
// arch, and the sm_90a pass defines IK_WGMMA).
//
// No atomics, no host synchronization, no allocation: ops.cpp hands in every buffer, and
// the kernels run on the stream they are given (CUDA-graph capturable).
#pragma once

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define IK_WGMMA 1
#endif

#include "inception_fused.h"
#include "inception_num_cuda.cuh"
#include "inception_core.cuh"

namespace inception_kernels {

// The dynamic shared memory of every fused kernel starts on the swizzled tiles' 1024-byte
// period (tiling::kStages); __grid_constant__ parameters stay in the constant bank (the
// loaders keep pointers into them) instead of being copied to the stack.
#define IK_KERNEL_SMEM extern __shared__ __align__(1024) char smem[]

// The block's DeviceCore, its TMA barriers initialised: on the wgmma build a static __shared__
// array of one mbarrier per ring stage (DeviceCore::bars; 16-bit types only, the others have no
// TMA path), elsewhere none. Every thread calls it once, before any product.
template <class T, bool kTwoWidths = false>
__device__ __forceinline__ DeviceCore<T, kTwoWidths> tma_core(char* smem) {
#if defined(IK_WGMMA)
  __shared__ uint64_t tma_bars[tiling::kStages];
  const DeviceCore<T, kTwoWidths> core{smem, Num<T>::kTensorCore ? tma_bars : nullptr};
#else
  const DeviceCore<T, kTwoWidths> core{smem};
#endif
  core.init_tma();
  return core;
}

// Dynamic shared memory every kernel may use without opting in.
constexpr int64_t kDefaultSmemLimit = 48 * 1024;

template <class Kernel, class Params>
cudaError_t launch(Kernel kernel, int64_t blocks, int threads, int64_t smem, cudaStream_t stream, const Params& p) {
  if (blocks == 0) return cudaSuccess;
  if (smem > kDefaultSmemLimit) {  // opt in (a host-side attribute: no stream work, capture-safe)
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  kernel<<<static_cast<unsigned>(blocks), threads, static_cast<size_t>(smem), stream>>>(p);
  return cudaGetLastError();
}

}  // namespace inception_kernels
