// The fused Inception kernels: the jobs of inception_algo.h on the GPU. CUDA headers only
// (see inception_fused.h).
//
// Every job's products go through DeviceCore::gemm, one kBM x kBN tile per call, 128 threads
// (4 warps, each a 32 x 32 quarter):
//   1. the block stages a kBM x kBK slice of A and a kBK x kBN slice of B into shared memory,
//      each thread calling the loaders for 8 + 8 elements (k fastest: consecutive threads
//      read consecutive channels, coalesced in channels_last, the fast path);
//   2. fp16 / bf16: each warp runs 2 x 2 WMMA m16n16k16 MMAs (tensor cores, fp32
//      accumulators); fp32 / fp64: each thread a 4 x 8 SIMT outer product in fp32 / fp64
//      (exact fp32: no TF32, so fp32 results do not depend on torch's TF32 switches);
//   3. the accumulators go to shared memory (aliasing the staging area) and the block runs
//      the epilogue element-wise.
// WMMA rather than raw mma.sync or CuTe: the fragment API gives HMMA on sm_80 and sm_90 from
// one source with no layout bookkeeping in the kernels, and needs no extra dependency; the
// cost is that Hopper's warpgroup MMA (HGMMA) and TMA are not used.
//
// No atomics, no host synchronization, no allocation: ops.cpp hands in every buffer, and
// the kernels run on the stream they are given (CUDA-graph capturable).

#include "inception_fused.h"

#include <mma.h>

#include "inception_num_cuda.cuh"

namespace inception_kernels {
namespace {

using namespace tiling;

template <class T>
struct DeviceCore {
  char* smem;  // the block's dynamic shared memory; staging area at offset 0

  template <class A, class B>
  __device__ __forceinline__ void stage(const A& a, const B& b, int k0, int kdim, T* as, T* bs) const {
#pragma unroll
    for (int e = threadIdx.x; e < kBM * kBK; e += kThreads) {
      const int m = e / kBK, kk = e % kBK;
      as[m * kLdA + kk] = k0 + kk < kdim ? a(m, k0 + kk) : zero<T>();
    }
#pragma unroll
    for (int e = threadIdx.x; e < kBK * kBN; e += kThreads) {
      const int kk = e % kBK, n = e / kBK;
      bs[kk * kLdB + n] = k0 + kk < kdim ? b(k0 + kk, n) : zero<T>();
    }
  }

  // C = A[kBM, kdim] x B[kdim, kBN]; then epi(m, n, C[m, n]) for every element.
  template <class A, class B, class E>
  __device__ void gemm(const A& a, const B& b, int kdim, const E& epi) const {
    using Acc = AccT<T>;
    T* as = reinterpret_cast<T*>(smem);
    T* bs = reinterpret_cast<T*>(smem + staging_b_offset(sizeof(T)));
    Acc* cs = reinterpret_cast<Acc*>(smem);
    __syncthreads();  // the previous gemm's epilogue is done with the staging area
    if constexpr (Num<T>::kTensorCore) {
      namespace wmma = nvcuda::wmma;
      const int warp = threadIdx.x / 32;
      const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
      for (int k0 = 0; k0 < kdim; k0 += kBK) {
        stage(a, b, k0, kdim, as, bs);
        __syncthreads();
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], as + (wm + 16 * i) * kLdA, kLdA);
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], bs + wn + 16 * j, kLdB);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        __syncthreads();
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
          wmma::store_matrix_sync(cs + (wm + 16 * i) * kLdC + wn + 16 * j, acc[i][j], kLdC, wmma::mem_row_major);
    } else {
      constexpr int kTm = 4, kTn = 8;  // per-thread micro-tile; 16 x 8 threads cover 64 x 64
      const int tr = threadIdx.x / (kBN / kTn), tc = threadIdx.x % (kBN / kTn);
      Acc acc[kTm][kTn];
#pragma unroll
      for (int i = 0; i < kTm; ++i)
#pragma unroll
        for (int j = 0; j < kTn; ++j) acc[i][j] = Acc(0);
      for (int k0 = 0; k0 < kdim; k0 += kBK) {
        stage(a, b, k0, kdim, as, bs);
        __syncthreads();
#pragma unroll 4
        for (int kk = 0; kk < kBK; ++kk) {
          Acc av[kTm], bv[kTn];
#pragma unroll
          for (int i = 0; i < kTm; ++i) av[i] = Num<T>::to_acc(as[(tr * kTm + i) * kLdA + kk]);
#pragma unroll
          for (int j = 0; j < kTn; ++j) bv[j] = Num<T>::to_acc(bs[kk * kLdB + tc * kTn + j]);
#pragma unroll
          for (int i = 0; i < kTm; ++i)
#pragma unroll
            for (int j = 0; j < kTn; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
      }
#pragma unroll
      for (int i = 0; i < kTm; ++i)
#pragma unroll
        for (int j = 0; j < kTn; ++j) cs[(tr * kTm + i) * kLdC + tc * kTn + j] = acc[i][j];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kBM * kBN; e += kThreads) epi(e / kBN, e % kBN, cs[(e / kBN) * kLdC + e % kBN]);
  }
};

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

template <class Kernel, class Params>
cudaError_t launch(Kernel kernel, int64_t blocks, int threads, int64_t smem, cudaStream_t stream, const Params& p) {
  if (blocks == 0) return cudaSuccess;
  const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  kernel<<<static_cast<unsigned>(blocks), threads, static_cast<size_t>(smem), stream>>>(p);
  return cudaGetLastError();
}

template <class T>
cudaError_t forward_typed(const FwdParams& p, int64_t smem, cudaStream_t stream) {
  return launch(inception_fwd_kernel<T>, num_fwd_jobs(p.n, p.tiles), kThreads, smem, stream, p);
}

template <class T>
int64_t backward_smem() {
  return bwd_smem_bytes(sizeof(T), sizeof(AccT<T>));
}

template <class T>
cudaError_t backward_typed(const BwdParams& p, cudaStream_t stream) {
  cudaError_t err = launch(inception_reduce_grad_kernel<T>, p.reduce_jobs[0] + p.reduce_jobs[1], kThreads,
                           staging_bytes(sizeof(T), sizeof(AccT<T>)), stream, p);
  if (err != cudaSuccess) return err;
  err = launch(inception_grads_kernel<T>, p.seg_end[kNumSegments - 1], kThreads, backward_smem<T>(), stream, p);
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

int64_t backward_smem_bytes(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return backward_smem<__half>();
    case DType::kBFloat16: return backward_smem<__nv_bfloat16>();
    case DType::kFloat32: return backward_smem<float>();
    case DType::kFloat64: return backward_smem<double>();
  }
  return 0;
}

}  // namespace inception_kernels
