// The fused Inception kernels: the jobs of inception_algo.h on the GPU. CUDA headers only
// (see inception_fused.h).
//
// Every job's products go through DeviceCore::gemm (inception_core.cuh).
// WMMA rather than raw mma.sync or CuTe: the fragment API gives HMMA on sm_80 and sm_90 from
// one source with no layout bookkeeping in the kernels, and needs no extra dependency; the
// cost is that Hopper's warpgroup MMA (HGMMA) and TMA are not used.
//
// No atomics, no host synchronization, no allocation: ops.cpp hands in every buffer, and
// the kernels run on the stream they are given (CUDA-graph capturable).

#include "inception_fused.h"

#include "inception_core.cuh"
#include "inception_num_cuda.cuh"

namespace inception_kernels {
namespace {

using namespace tiling;

// __grid_constant__: the loaders keep pointers into the parameters, which then stay in the
// constant bank instead of being copied to the stack.
template <class T>
__global__ void __launch_bounds__(kThreads, 1) inception_fwd_kernel(const __grid_constant__ FwdParams p) {
  extern __shared__ __align__(kSmemAlign) char smem[];
  run_fwd_job<T>(p, blockIdx.x, DeviceCore<T>{smem}, smem);
}

template <class T>
__global__ void __launch_bounds__(kThreads, 1) inception_reduce_grad_kernel(const __grid_constant__ BwdParams p) {
  extern __shared__ __align__(kSmemAlign) char smem[];
  run_reduce_grad_job<T>(p, blockIdx.x, DeviceCore<T>{smem});
}

template <class T>
__global__ void __launch_bounds__(kThreads, 1) inception_grads_kernel(const __grid_constant__ BwdParams p) {
  extern __shared__ __align__(kSmemAlign) char smem[];
  AccT<T>* dacc = reinterpret_cast<AccT<T>*>(smem + staging_bytes(sizeof(T), sizeof(AccT<T>)));
  run_grads_job<T>(p, blockIdx.x, DeviceCore<T>{smem}, dacc);
}

constexpr int kSumThreads = 256;
constexpr int64_t kSumMaxBlocks = 132 * 16;

template <class T>
__global__ void __launch_bounds__(kSumThreads) inception_sum_partials_kernel(const __grid_constant__ BwdParams p) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kSumThreads) + threadIdx.x; i < p.p_total;
       i += static_cast<int64_t>(gridDim.x) * kSumThreads)
    sum_partials<T>(p, i);
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

template <class T>
cudaError_t forward_typed(const FwdParams& p, int64_t smem, cudaStream_t stream) {
  return launch(inception_fwd_kernel<T>, num_fwd_jobs(p.n, p.tiles), kThreads, smem, stream, p);
}

template <class T>
cudaError_t backward_typed(const BwdParams& p, cudaStream_t stream) {
  cudaError_t err = launch(inception_reduce_grad_kernel<T>, p.reduce_jobs[0] + p.reduce_jobs[1], kThreads,
                           staging_bytes(sizeof(T), sizeof(AccT<T>)), stream, p);
  if (err != cudaSuccess) return err;
  err = launch(inception_grads_kernel<T>, p.seg_end[kNumSegments - 1], kThreads,
               bwd_smem_bytes(sizeof(T), sizeof(AccT<T>)), stream, p);
  if (err != cudaSuccess) return err;
  int64_t blocks = cdiv64(p.p_total, kSumThreads);
  if (blocks > kSumMaxBlocks) blocks = kSumMaxBlocks;
  return launch(inception_sum_partials_kernel<T>, blocks, kSumThreads, 0, stream, p);
}

}  // namespace

cudaError_t launch_inception_forward(const FwdParams& p, DType dtype, int64_t smem_bytes, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat16: return forward_typed<__half>(p, smem_bytes, stream);
    case DType::kBFloat16: return forward_typed<__nv_bfloat16>(p, smem_bytes, stream);
    case DType::kFloat32: return forward_typed<float>(p, smem_bytes, stream);
    case DType::kFloat64: return forward_typed<double>(p, smem_bytes, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_inception_backward(const BwdParams& p, DType dtype, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat16: return backward_typed<__half>(p, stream);
    case DType::kBFloat16: return backward_typed<__nv_bfloat16>(p, stream);
    case DType::kFloat32: return backward_typed<float>(p, stream);
    case DType::kFloat64: return backward_typed<double>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace inception_kernels
