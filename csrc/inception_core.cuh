// DeviceCore: how a thread block computes one GEMM tile of a job (see inception_algo.h) on
// the GPU. Included by the kernel files (inception_launch.cuh), and by tests/csrc/emulator.cpp, which compiles
// this very code on the CPU with 128 std::threads per block and CPU versions of the PTX
// instructions (tests/csrc/cuda_shim.h, from the PTX ISA's documented fragment layouts,
// swizzle and matrix descriptors): that is how the pipeline, the swizzled tiles, the
// fragment addressing and the barriers are tested without a GPU.
//
// C[kBM x kBN] = A[kBM x kdim] B[kdim x kBN] on 128 threads (one warpgroup, 4 warps):
//
// fp16 / bf16 (tensor cores):
//   - a ring of kStages stages; each stage is a swizzled 64 x 64 A tile and B tile (tiling::
//     swizzle128: 128-byte lines, chunk c of line l at slot c ^ (l % 8)). A line is a row for
//     K-major operands and a k for MN-major ones. Each thread stages 4 + 4 chunks per stage
//     (consecutive threads take consecutive chunks of a line: coalesced): chunks the loaders
//     point at go global -> shared with 16-byte cp.async (zero-filled past the operand),
//     computed chunks with one 16-byte shared store. kStages - 1 stages are in flight while
//     one is multiplied (cp.async.wait_group kStages - 2);
//   - sm_80 (and any arch without IK_WGMMA): each warp owns a 32 x 32 quarter of C and reads
//     its fragments with ldmatrix (.trans for MN-major operands) into mma.sync m16n8k16
//     (HMMA.16816.F32), 2 x 4 MMAs per 16-deep step;
//   - sm_90a (IK_WGMMA): the warpgroup issues wgmma.mma_async m64n64k16 (HGMMA.64x64x16.F32)
//     with both operands read from the swizzled tiles through matrix descriptors (128-byte
//     swizzle; transposed for MN-major operands), 4 per stage;
//   - the epilogue runs from the accumulator registers: epi(m, n, acc) per element.
// fp32 / fp64 (SIMT, exact fp32: no TF32, so fp32 results do not depend on torch's TF32
// switches): one stage of kSimtBK through plain shared tiles, a 4 x 8 micro-tile per thread.
#pragma once

#if defined(__CUDACC__)
#include "inception_ptx.cuh"
#endif

#include "inception_algo.h"

namespace inception_kernels {

template <class T>
struct DeviceCore {
  char* smem;  // the block's dynamic shared memory (1024-byte aligned); staging area at offset 0

  // One operand tile of a stage: the chunks of A (or B) for k0 .. k0 + kTcBK - 1.
  template <class Op>
  __device__ __forceinline__ void stage_tile(const Op& op, int k0, int kdim, char* tile) const {
    using namespace tiling;
#pragma unroll 1  // a chunk's address math once in the code: registers and compile time (the copies are async)
    for (int i = 0; i < kTileLines * (kLineBytes / 16) / kThreads; ++i) {
      const int e = threadIdx.x + i * kThreads;
      const int line = e / (kLineBytes / 16), c = e % (kLineBytes / 16);
      const int r = Op::kKMajor ? line : c * kChunk;
      const int k = Op::kKMajor ? k0 + c * kChunk : k0 + line;
      char* dst = tile + swizzle128(line, c);
      alignas(16) T v[kChunk];
      if (k >= kdim) {
        zero8(v);
        ptx::st_shared16(dst, v);
        continue;
      }
      int valid = 0;
      const T* src = op.chunk(r, k, Op::kKMajor ? imin(kChunk, kdim - k) : kChunk, v, &valid);
      if (src != nullptr)
        ptx::cp_async16(dst, src, valid * static_cast<int>(sizeof(T)));
      else
        ptx::st_shared16(dst, v);
    }
  }

  // fn(i) for i in [0, count), spread over the block's threads, between two barriers.
  template <class F>
  __device__ void parallel_for(int count, const F& fn) const {
    __syncthreads();
    for (int i = threadIdx.x; i < count; i += tiling::kThreads) fn(i);
    __syncthreads();
  }

  // C[m] = sum over k < kdim of A(m, k) for the 64 rows of an MN-major operand, then
  // epi(m, 0, C[m]): a bias gradient as a reduction. Thread t sums chunk column t % 8 over
  // every 16th k from t / 8; the 16 partial rows then add up in order through shared memory.
  template <class A, class E>
  __device__ void reduce_rows(const A& a, int kdim, const E& epi) const {
    static_assert(!A::kKMajor, "reduce_rows sums the rows of an MN-major operand");
    using namespace tiling;
    using Acc = AccT<T>;
    constexpr int kCols = kBM / kChunk, kLanes = kThreads / kCols;
    const int c = threadIdx.x % kCols, lane = threadIdx.x / kCols;
    Acc s[kChunk];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) s[j] = Acc(0);
    for (int k = lane; k < kdim; k += kLanes) {
      alignas(16) T v[kChunk];
      fetch_chunk<T>(a, c * kChunk, k, kChunk, v);
#pragma unroll
      for (int j = 0; j < kChunk; ++j) s[j] += Num<T>::to_acc(v[j]);
    }
    Acc* part = reinterpret_cast<Acc*>(smem);  // [kLanes][kBM] in the staging area
    __syncthreads();  // the previous gemm is done with the staging area
#pragma unroll
    for (int j = 0; j < kChunk; ++j) part[lane * kBM + c * kChunk + j] = s[j];
    __syncthreads();
    if (threadIdx.x < kBM) {
      Acc t = Acc(0);
      for (int l = 0; l < kLanes; ++l) t += part[l * kBM + threadIdx.x];
      epi(threadIdx.x, 0, t);
    }
  }

  // C = A[kBM, kdim] x B[kdim, kBN]; then epi(m, n, C[m, n]) for every element.
  template <class A, class B, class E>
  __device__ void gemm(const A& a, const B& b, int kdim, const E& epi) const {
    __syncthreads();  // the previous gemm is done with the staging area (and its epilogue's writes are visible)
    if constexpr (Num<T>::kTensorCore)
      gemm_tensor_core(a, b, kdim, epi);
    else
      gemm_simt(a, b, kdim, epi);
  }

  template <class A, class B, class E>
  __device__ void gemm_tensor_core(const A& a, const B& b, int kdim, const E& epi) const {
    using namespace tiling;
    constexpr int kStageBytes = 2 * kTcTileBytes;
    const int steps = cdiv(kdim, kTcBK);
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < steps) {
        stage_tile(a, s * kTcBK, kdim, smem + s * kStageBytes);
        stage_tile(b, s * kTcBK, kdim, smem + s * kStageBytes + kTcTileBytes);
      }
      ptx::cp_async_commit();  // one group per stage, empty past the end: the wait counts stay uniform
    }
#if defined(IK_WGMMA)
    float acc[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) acc[i] = 0.0f;
#else
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
#endif
    for (int kt = 0; kt < steps; ++kt) {
      ptx::cp_async_wait<kStages - 2>();  // this thread's chunks of stage kt have landed
#if defined(IK_WGMMA)
      ptx::fence_proxy_async();  // ... and, with its st.shared chunks, are visible to wgmma
#endif
      __syncthreads();  // every thread's chunks of stage kt; everyone is done with stage kt - 1
      const int next = kt + kStages - 1;
      if (next < steps) {
        char* slot = smem + (next % kStages) * kStageBytes;
        stage_tile(a, next * kTcBK, kdim, slot);
        stage_tile(b, next * kTcBK, kdim, slot + kTcTileBytes);
      }
      ptx::cp_async_commit();
      const char* at = smem + (kt % kStages) * kStageBytes;
      const char* bt = at + kTcTileBytes;
#if defined(IK_WGMMA)
      ptx::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kTcBK / 16; ++kk)
        ptx::wgmma_m64n64k16<T, A::kKMajor ? 0 : 1, B::kKMajor ? 0 : 1>(
            acc, desc_sw128<A::kKMajor>(at, kk), desc_sw128<B::kKMajor>(bt, kk), 1);
      ptx::wgmma_commit();
      ptx::wgmma_wait<0>();  // the stage is read before the barrier that lets it be refilled
#else
#pragma unroll
      for (int kk = 0; kk < kTcBK / 16; ++kk) {
        uint32_t fa[2][4], fb[4][2];
#pragma unroll
        for (int i = 0; i < 2; ++i) load_a_fragment<A::kKMajor>(fa[i], at, wm + 16 * i, kk, lane);
#pragma unroll
        for (int j = 0; j < 2; ++j) load_b_fragments<B::kKMajor>(fb[2 * j], fb[2 * j + 1], bt, wn + 16 * j, kk, lane);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) ptx::mma_16816<T>(acc[i][j], fa[i], fb[j]);
      }
#endif
    }
    ptx::cp_async_wait<0>();  // no copy outlives the gemm (the trailing groups are empty)
#if defined(IK_WGMMA)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        epi(16 * warp + lane / 4 + 8 * (e / 2), 8 * j + 2 * (lane % 4) + e % 2, acc[4 * j + e]);
#else
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          epi(wm + 16 * i + lane / 4 + 8 * (e / 2), wn + 8 * j + 2 * (lane % 4) + e % 2, acc[i][j][e]);
#endif
  }

#if defined(IK_WGMMA)
  // wgmma's matrix descriptor of k-step kk (16 deep) of a swizzled tile (PTX ISA, "Matrix
  // Descriptor Format"; canonical 128-byte-swizzle layouts): start address >> 4 in bits 0-13,
  // leading byte offset >> 4 in 16-29, stride byte offset >> 4 in 32-45, swizzle mode 1
  // (128 B) in 62-63. K-major ((8,m),(T,2k)):((8T,SBO),(1,T)): rows 128 B apart, 8-row groups
  // SBO = 1024 B apart, the k-step 32 B into the line. MN-major ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)):
  // 64 rows per line (one swizzle atom wide, so LBO is not used), k lines 128 B apart, 8-k
  // groups SBO = 1024 B apart, the k-step 16 lines on. The tile is 1024-byte aligned.
  template <bool kKMajor>
  __device__ __forceinline__ static uint64_t desc_sw128(const char* tile, int kk) {
    const uint32_t start = ptx::smem_u32(tile) + (kKMajor ? kk * 32 : kk * 16 * tiling::kLineBytes);
    return static_cast<uint64_t>((start >> 4) & 0x3FFF) | (static_cast<uint64_t>(1) << 16) |
           (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
  }
#else
  // The A fragment (16 rows from m0, k-step kk) of mma_16816 with one ldmatrix.x4: matrices
  // (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15). Lane l
  // addresses row l % 8 of matrix l / 8: a row of a K-major tile, or (.trans) a k line of an
  // MN-major tile, whose transpose gives the same fragment.
  template <bool kKMajor>
  __device__ __forceinline__ static void load_a_fragment(uint32_t (&f)[4], const char* tile, int m0, int kk, int lane) {
    const int mat = lane / 8, r = lane % 8;
    if (kKMajor) {
      ptx::ldmatrix_x4(f, tile + tiling::swizzle128(m0 + 8 * (mat % 2) + r, 2 * kk + mat / 2));
    } else {
      ptx::ldmatrix_x4_trans(f, tile + tiling::swizzle128(16 * kk + 8 * (mat / 2) + r, (m0 + 8 * (mat % 2)) / 8));
    }
  }

  // The B fragments of two n8 blocks (16 columns from n0, k-step kk) with one ldmatrix.x4:
  // matrices (n 0-7, k 0-7) -> b0[0], (n 0-7, k 8-15) -> b0[1], (n 8-15, k 0-7) -> b1[0],
  // (n 8-15, k 8-15) -> b1[1]; lines are n (K-major) or k (MN-major, .trans).
  template <bool kKMajor>
  __device__ __forceinline__ static void load_b_fragments(uint32_t (&b0)[2], uint32_t (&b1)[2], const char* tile, int n0,
                                                          int kk, int lane) {
    const int mat = lane / 8, r = lane % 8;
    uint32_t f[4];
    if (kKMajor) {
      ptx::ldmatrix_x4(f, tile + tiling::swizzle128(n0 + 8 * (mat / 2) + r, 2 * kk + mat % 2));
    } else {
      ptx::ldmatrix_x4_trans(f, tile + tiling::swizzle128(16 * kk + 8 * (mat % 2) + r, (n0 + 8 * (mat / 2)) / 8));
    }
    b0[0] = f[0], b0[1] = f[1], b1[0] = f[2], b1[1] = f[3];
  }
#endif

  template <class A, class B, class E>
  __device__ void gemm_simt(const A& a, const B& b, int kdim, const E& epi) const {
    using namespace tiling;
    using Acc = AccT<T>;
    T* as = reinterpret_cast<T*>(smem);
    T* bs = as + kSimtTileElems;
    constexpr int kTm = 4, kTn = 8;  // per-thread micro-tile; 16 x 8 threads cover 64 x 64
    const int tr = threadIdx.x / (kBN / kTn), tc = threadIdx.x % (kBN / kTn);
    Acc acc[kTm][kTn];
#pragma unroll
    for (int i = 0; i < kTm; ++i)
#pragma unroll
      for (int j = 0; j < kTn; ++j) acc[i][j] = Acc(0);
    for (int k0 = 0; k0 < kdim; k0 += kSimtBK) {
      stage_simt(a, k0, kdim, as);
      stage_simt(b, k0, kdim, bs);
      __syncthreads();
#pragma unroll 4
      for (int kk = 0; kk < kSimtBK; ++kk) {
        Acc av[kTm], bv[kTn];
#pragma unroll
        for (int i = 0; i < kTm; ++i) av[i] = Num<T>::to_acc(simt_at<A::kKMajor>(as, tr * kTm + i, kk));
#pragma unroll
        for (int j = 0; j < kTn; ++j) bv[j] = Num<T>::to_acc(simt_at<B::kKMajor>(bs, tc * kTn + j, kk));
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
      for (int j = 0; j < kTn; ++j) epi(tr * kTm + i, tc * kTn + j, acc[i][j]);
  }

  // Element (row r, k) of a SIMT tile: [kBM][kSimtLdK] K-major, [kSimtBK][kSimtLdM] MN-major.
  template <bool kKMajor>
  __device__ __forceinline__ static T& simt_at(T* t, int r, int k) {
    return kKMajor ? t[r * tiling::kSimtLdK + k] : t[k * tiling::kSimtLdM + r];
  }

  // The 128 chunks of a SIMT tile (64 rows x 16 k): one per thread.
  template <class Op>
  __device__ __forceinline__ void stage_simt(const Op& op, int k0, int kdim, T* tile) const {
    using namespace tiling;
    const int e = threadIdx.x;
    const int r = Op::kKMajor ? e / (kSimtBK / kChunk) : (e % (kBM / kChunk)) * kChunk;
    const int k = Op::kKMajor ? k0 + (e % (kSimtBK / kChunk)) * kChunk : k0 + e / (kBM / kChunk);
    alignas(16) T v[kChunk];
    if (k < kdim)
      fetch_chunk<T>(op, r, k, Op::kKMajor ? imin(kChunk, kdim - k) : kChunk, v);
    else
      zero8(v);
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      if (Op::kKMajor)
        simt_at<true>(tile, r, k - k0 + j) = v[j];
      else
        simt_at<false>(tile, r + j, k - k0) = v[j];
    }
  }
};

}  // namespace inception_kernels
