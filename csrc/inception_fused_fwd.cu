// The fused Inception forward kernel: run_fwd_job (inception_algo.h) on the GPU, one block per
// (image, tile, branch job). CUDA headers only (see inception_fused.h, inception_launch.cuh).

#include "inception_launch.cuh"

namespace inception_kernels {
namespace {

using namespace tiling;

template <class T>
__global__ void __launch_bounds__(kThreads, 1) inception_fwd_kernel(const __grid_constant__ FwdParams p) {
  IK_KERNEL_SMEM;
  const DeviceCore<T> core = tma_core<T>(smem);
  run_fwd_job<T>(p, blockIdx.x, core, smem);
}

template <class T>
cudaError_t forward_typed(const FwdParams& p, int64_t smem, cudaStream_t stream) {
  return launch(inception_fwd_kernel<T>, num_fwd_jobs(p.n, p.tiles, p.stage), kThreads, smem, stream, p);
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

}  // namespace inception_kernels
