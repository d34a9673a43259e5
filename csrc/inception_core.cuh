// DeviceCore: how a thread block computes one GEMM tile of a job (see inception_algo.h) on
// the GPU. Included by inception_fused.cu, and by tests/csrc/emulator.cpp, which compiles
// this very code on the CPU with 128 std::threads per block, a std::barrier for
// __syncthreads and a reference implementation of the WMMA fragment API
// (tests/csrc/cuda_shim.h): that is how the staging, the fragment offsets and leading
// dimensions, the SIMT micro-tiles and the barriers are tested without a GPU.
//
// Per call, 128 threads (4 warps, each a 32 x 32 quarter of the 64 x 64 tile):
//   1. the block stages a kBM x kBK slice of A and a kBK x kBN slice of B into shared memory,
//      each thread calling the loaders for 8 + 8 elements (k fastest: consecutive threads
//      read consecutive channels, coalesced in channels_last, the fast path);
//   2. fp16 / bf16: each warp runs 2 x 2 WMMA m16n16k16 MMAs (tensor cores, fp32
//      accumulators); fp32 / fp64: each thread a 4 x 8 SIMT outer product in fp32 / fp64
//      (exact fp32: no TF32, so fp32 results do not depend on torch's TF32 switches);
//   3. the accumulators go to shared memory (aliasing the staging area) and the block runs
//      the epilogue element-wise.
#pragma once

#if defined(__CUDACC__)
#include <mma.h>
#endif

#include "inception_algo.h"

namespace inception_kernels {

template <class T>
struct DeviceCore {
  char* smem;  // the block's dynamic shared memory; staging area at offset 0

  template <class A, class B>
  __device__ __forceinline__ void stage(const A& a, const B& b, int k0, int kdim, T* as, T* bs) const {
#pragma unroll
    for (int e = threadIdx.x; e < tiling::kBM * tiling::kBK; e += tiling::kThreads) {
      const int m = e / tiling::kBK, kk = e % tiling::kBK;
      as[m * tiling::kLdA + kk] = k0 + kk < kdim ? a(m, k0 + kk) : zero<T>();
    }
#pragma unroll
    for (int e = threadIdx.x; e < tiling::kBK * tiling::kBN; e += tiling::kThreads) {
      const int kk = e % tiling::kBK, n = e / tiling::kBK;
      bs[kk * tiling::kLdB + n] = k0 + kk < kdim ? b(k0 + kk, n) : zero<T>();
    }
  }

  // C = A[kBM, kdim] x B[kdim, kBN]; then epi(m, n, C[m, n]) for every element.
  template <class A, class B, class E>
  __device__ void gemm(const A& a, const B& b, int kdim, const E& epi) const {
    using Acc = AccT<T>;
    T* as = reinterpret_cast<T*>(smem);
    T* bs = reinterpret_cast<T*>(smem + tiling::staging_b_offset(sizeof(T)));
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
      for (int k0 = 0; k0 < kdim; k0 += tiling::kBK) {
        stage(a, b, k0, kdim, as, bs);
        __syncthreads();
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], as + (wm + 16 * i) * tiling::kLdA, tiling::kLdA);
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], bs + wn + 16 * j, tiling::kLdB);
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
          wmma::store_matrix_sync(cs + (wm + 16 * i) * tiling::kLdC + wn + 16 * j, acc[i][j], tiling::kLdC, wmma::mem_row_major);
    } else {
      constexpr int kTm = 4, kTn = 8;  // per-thread micro-tile; 16 x 8 threads cover 64 x 64
      const int tr = threadIdx.x / (tiling::kBN / kTn), tc = threadIdx.x % (tiling::kBN / kTn);
      Acc acc[kTm][kTn];
#pragma unroll
      for (int i = 0; i < kTm; ++i)
#pragma unroll
        for (int j = 0; j < kTn; ++j) acc[i][j] = Acc(0);
      for (int k0 = 0; k0 < kdim; k0 += tiling::kBK) {
        stage(a, b, k0, kdim, as, bs);
        __syncthreads();
#pragma unroll 4
        for (int kk = 0; kk < tiling::kBK; ++kk) {
          Acc av[kTm], bv[kTn];
#pragma unroll
          for (int i = 0; i < kTm; ++i) av[i] = Num<T>::to_acc(as[(tr * kTm + i) * tiling::kLdA + kk]);
#pragma unroll
          for (int j = 0; j < kTn; ++j) bv[j] = Num<T>::to_acc(bs[kk * tiling::kLdB + tc * kTn + j]);
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
        for (int j = 0; j < kTn; ++j) cs[(tr * kTm + i) * tiling::kLdC + tc * kTn + j] = acc[i][j];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < tiling::kBM * tiling::kBN; e += tiling::kThreads) epi(e / tiling::kBN, e % tiling::kBN, cs[(e / tiling::kBN) * tiling::kLdC + e % tiling::kBN]);
  }
};

}  // namespace inception_kernels
