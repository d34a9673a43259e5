// Launchers of the fused Inception kernels (inception_fused_fwd.cu / _bwd.cu). Plain C++ + CUDA runtime
// types (no torch header), like maxpool3x3.h: ops.cpp plans the launch (inception_algo.h's
// plan::forward / plan::backward), allocates every buffer through PyTorch's allocator and
// calls these on the current stream.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "dtype.h"
#include "inception_algo.h"

namespace inception_kernels {

// The whole forward in one launch: num_fwd_jobs(p.n, p.tiles) blocks of tiling::kThreads
// threads with `smem_bytes` of dynamic shared memory (plan::forward's figure).
// Returns cudaGetLastError() after the launch (cudaSuccess when there is no job).
cudaError_t launch_inception_forward(const FwdParams& p, DType dtype, int64_t smem_bytes, cudaStream_t stream);

// The backward in at most three launches: the reduce-output gradients (p.reduce_jobs), the
// dx and parameter-gradient jobs (p.seg_end), the ordered sum of the partials (p.p_total).
// p comes from plan::backward with p.gr, p.dx, p.partial and p.grads set.
cudaError_t launch_inception_backward(const BwdParams& p, DType dtype, cudaStream_t stream);

}  // namespace inception_kernels
