// The PTX instructions the tensor-core GEMM core (inception_core.cuh) is built from, as inline
// assembly: cp.async (LDGSTS), ldmatrix (LDSM), mma.sync m16n8k16 (HMMA) and, on sm_90a,
// warpgroup MMA (wgmma.mma_async: HGMMA) and TMA (cp.async.bulk.tensor: UTMALDG) with mbarriers. Hand-written rather than CuTe's atoms: csrc/README
// section "The CUDA C++ backend" in README.md says why.
//
// tests/csrc/cuda_shim.h defines the same functions on the CPU from the PTX ISA's documented
// semantics (fragment layouts, swizzle, descriptors, asynchronous copy groups), so that the
// core that calls them runs in the emulator of tests/test_cuda_emulator.py. Keep the two in
// step: each function's comment here is the contract both implement.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace inception_kernels {
namespace ptx {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Copy 16 bytes global -> shared asynchronously, of which the first src_bytes (0..16) are read
// and the rest are zero-filled (cp.async.cg: L2 only). Both addresses 16-byte aligned.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_bytes)
               : "memory");
}

// Close the group of cp.async issued by this thread since the last commit.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Wait until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Store 16 bytes to shared memory (an operand chunk computed in registers).
__device__ __forceinline__ void st_shared16(void* smem, const void* v) {
  *static_cast<uint4*>(smem) = *static_cast<const uint4*>(v);
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane l gives the address of row l % 8 of
// 8x8 matrix l / 8 (16 bytes); r[i] of lane t holds matrix i's elements (row t / 4, columns
// 2 (t % 4) and 2 (t % 4) + 1), or with .trans those of the transposed matrix.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem)));
}

// d += A (16x16, row) * B (16x8, col), fp32 accumulators. With g = lane / 4, q = lane % 4:
// a[0] = A[g][2q..2q+1], a[1] = A[g+8][2q..], a[2] = A[g][2q+8..], a[3] = A[g+8][2q+8..];
// b[0] = B[2q..2q+1][g], b[1] = B[2q+8..2q+9][g]; d[0..1] = D[g][2q..2q+1], d[2..3] = D[g+8][2q..].
template <class T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                         const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

#if defined(IK_WGMMA)
// ---------------------------------------------------------------------------------------
// Hopper warpgroup MMA (sm_90a only)
// ---------------------------------------------------------------------------------------

// Make this thread's generic-proxy writes to shared memory (st.shared, and cp.async data that
// cp.async.wait_group has made visible) visible to the async proxy that wgmma reads through.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// D[64 x N] (+)= A[64 x 16] * B[16 x N] for the warpgroup (128 threads), N = 64 or 128,
// fp32 accumulators d[0 .. N / 2 - 1], both operands read from shared
// memory through matrix descriptors (see desc_sw128 in inception_core.cuh). TnspA / TnspB: 0
// for K-major, 1 for MN-major operands. Accumulator layout: warp w of the warpgroup holds rows
// 16 w .. 16 w + 15; within the warp as mma_16816's d, for each 8-column block j < N / 8:
// d[4 j .. 4 j + 3] = D[16 w + g][8 j + 2q ..], D[16 w + g + 8][8 j + 2q ..].
//
// wgmma.mma_async.sync.aligned.m64nNk16.f32.<type>.<type> {d}, desc-a, desc-b, scale-d,
// imm-scale-a (1), imm-scale-b (1), imm-trans-a, imm-trans-b: Wgmma<T>::nN for each N, written
// out by IK_WGMMA_SHAPE(name, shape, scale-d operand, "{d}, desc-a, desc-b", "trans-a, trans-b",
// d operands) for both 16-bit types.
template <class T>
struct Wgmma;

#define IK_WGMMA_D8(i) \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define IK_WGMMA_SHAPE(NAME, SHAPE, SD, OPERANDS, TRANS, ...)                                                  \
  template <int TnspA, int TnspB, int kD>                                                                      \
  static __device__ __forceinline__ void NAME(float(&d)[kD], uint64_t da, uint64_t db, int sd) {             \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " SD ", 0;\n"                                             \
                 "wgmma.mma_async.sync.aligned." SHAPE ".f32." IK_WGMMA_TYPE "." IK_WGMMA_TYPE " " OPERANDS     \
                 ", p, 1, 1, " TRANS ";\n}\n"                                                                    \
                 : __VA_ARGS__                                                                                 \
                 : "l"(da), "l"(db), "r"(sd), "n"(TnspA), "n"(TnspB));                                         \
  }
#define IK_WGMMA_SHAPES                                                                                        \
  IK_WGMMA_SHAPE(n64, "m64n64k16", "%34",                                                                      \
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"                       \
                 ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33" \
                 , "%35, %36",                                                                                 \
                 IK_WGMMA_D8(0), IK_WGMMA_D8(8), IK_WGMMA_D8(16), IK_WGMMA_D8(24))                             \
  IK_WGMMA_SHAPE(n128, "m64n128k16", "%66",                                                                    \
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"                       \
                 ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"            \
                 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"            \
                 ", %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65" \
                 , "%67, %68",                                                                                 \
                 IK_WGMMA_D8(0), IK_WGMMA_D8(8), IK_WGMMA_D8(16), IK_WGMMA_D8(24),                             \
                 IK_WGMMA_D8(32), IK_WGMMA_D8(40), IK_WGMMA_D8(48), IK_WGMMA_D8(56))

template <>
struct Wgmma<__half> {
#define IK_WGMMA_TYPE "f16"
  IK_WGMMA_SHAPES
#undef IK_WGMMA_TYPE
};

template <>
struct Wgmma<__nv_bfloat16> {
#define IK_WGMMA_TYPE "bf16"
  IK_WGMMA_SHAPES
#undef IK_WGMMA_TYPE
};

#undef IK_WGMMA_SHAPES
#undef IK_WGMMA_SHAPE
#undef IK_WGMMA_D8

// ---------------------------------------------------------------------------------------
// TMA (cp.async.bulk.tensor) and the mbarriers it completes on (sm_90)
// ---------------------------------------------------------------------------------------

// Initialise an mbarrier that completes a phase when `count` threads have arrived and the
// transaction bytes they announced have landed; then make the initialisation visible to the
// async proxy (TMA) before any thread uses it (the caller's __syncthreads follows).
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void fence_mbar_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }

// Arrive on bar announcing `bytes` more transaction bytes for its current phase (the TMA loads
// that complete on it).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}

// Wait until bar's phase with this parity (0, 1, 0, ...) has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nIK_MBAR_WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@p bra IK_MBAR_DONE;\nbra IK_MBAR_WAIT;\nIK_MBAR_DONE:\n}\n" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}

// Load the box of the 4-D tensor map `map` (a __grid_constant__ parameter's address) at
// coordinates (c0 innermost .. c3; outside the tensor: zeros) into shared memory at smem
// (128-byte aligned; 1024 for the 128-byte swizzle the maps use), completing on bar.
__device__ __forceinline__ void tma_load_4d(void* smem, const void* map, int c0, int c1, int c2, int c3, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::
          "r"(smem_u32(smem)),
      "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_u32(bar))
      : "memory");
}

template <class T, int N, int TnspA, int TnspB>
__device__ __forceinline__ void wgmma_m64nNk16(float (&d)[N / 2], uint64_t da, uint64_t db, int sd) {
  static_assert(N == 64 || N == 128, "wgmma m64nNk16: N is 64 or 128 here");
  if constexpr (N == 64) Wgmma<T>::template n64<TnspA, TnspB>(d, da, db, sd);
  if constexpr (N == 128) Wgmma<T>::template n128<TnspA, TnspB>(d, da, db, sd);
}
#endif  // IK_WGMMA

}  // namespace ptx
}  // namespace inception_kernels
