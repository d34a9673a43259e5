// The fused Inception backward kernels (inception_algo.h's jobs on the GPU): the reduce-output
// gradients, the dx / weight / bias gradient tiles, and the ordered sum of the partials.
// CUDA headers only (see inception_fused.h, inception_launch.cuh).

#include "inception_launch.cuh"

namespace inception_kernels {
namespace {

using namespace tiling;

template <class T>
__global__ void __launch_bounds__(kThreads, 1) inception_reduce_grad_kernel(const __grid_constant__ BwdParams p) {
  IK_KERNEL_SMEM;
  run_reduce_grad_job<T>(p, blockIdx.x, DeviceCore<T>{smem});
}

template <class T>
__global__ void __launch_bounds__(kThreads, 1) inception_grads_kernel(const __grid_constant__ BwdParams p) {
  IK_KERNEL_SMEM;
  const DeviceCore<T, true> core = tma_core<T, true>(smem);  // narrow rings for the dx jobs (bwd_dx_offset)
  run_grads_job<T>(p, blockIdx.x, core, smem + bwd_dx_offset(sizeof(T), sizeof(AccT<T>)));
}

constexpr int kSumThreads = 256;
constexpr int64_t kSumMaxBlocks = 132 * 16;

template <class T>
__global__ void __launch_bounds__(kSumThreads) inception_sum_partials_kernel(const __grid_constant__ BwdParams p) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kSumThreads) + threadIdx.x; i < p.p_total;
       i += static_cast<int64_t>(gridDim.x) * kSumThreads)
    sum_partials<T>(p, i);
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
