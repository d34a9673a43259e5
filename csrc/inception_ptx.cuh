// The PTX instructions the tensor-core GEMM core (inception_core.cuh) is built from, as inline
// assembly: cp.async (LDGSTS), ldmatrix (LDSM), mma.sync m16n8k16 (HMMA) and, on sm_90a,
// warpgroup MMA (wgmma.mma_async: HGMMA). Hand-written rather than CuTe's atoms: csrc/README
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

// D[64 x 64] (+)= A[64 x 16] * B[16 x 64] for the warpgroup (128 threads), fp32 accumulators,
// both operands read from shared memory through matrix descriptors (see desc_sw128 in
// inception_core.cuh). tnsp_a / tnsp_b: 0 for K-major, 1 for MN-major operands. Accumulator
// layout: warp w of the warpgroup holds rows 16 w .. 16 w + 15; within the warp as mma_16816's
// d, for each 8-column block j: d[4 j .. 4 j + 3] = D[16 w + g][8 j + 2q ..], D[16 w + g + 8][8 j + 2q ..].
template <class T, int TnspA, int TnspB>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], uint64_t desc_a, uint64_t desc_b, int scale_d);

#define IK_WGMMA_M64N64K16(TYPE, PTXTYPE)                                                                          \
  template <>                                                                                                     \
  __device__ __forceinline__ void wgmma_m64n64k16<TYPE, 0, 0>(float(&d)[32], uint64_t da, uint64_t db, int sd) {  \
    IK_WGMMA_ASM(PTXTYPE, "0", "0")                                                                              \
  }                                                                                                               \
  template <>                                                                                                     \
  __device__ __forceinline__ void wgmma_m64n64k16<TYPE, 0, 1>(float(&d)[32], uint64_t da, uint64_t db, int sd) {  \
    IK_WGMMA_ASM(PTXTYPE, "0", "1")                                                                              \
  }                                                                                                               \
  template <>                                                                                                     \
  __device__ __forceinline__ void wgmma_m64n64k16<TYPE, 1, 0>(float(&d)[32], uint64_t da, uint64_t db, int sd) {  \
    IK_WGMMA_ASM(PTXTYPE, "1", "0")                                                                              \
  }                                                                                                               \
  template <>                                                                                                     \
  __device__ __forceinline__ void wgmma_m64n64k16<TYPE, 1, 1>(float(&d)[32], uint64_t da, uint64_t db, int sd) {  \
    IK_WGMMA_ASM(PTXTYPE, "1", "1")                                                                              \
  }

// wgmma.mma_async.sync.aligned.m64n64k16.f32.<type>.<type> d, desc-a, desc-b, scale-d,
// imm-scale-a (1), imm-scale-b (1), imm-trans-a, imm-trans-b.
#define IK_WGMMA_ASM(PTXTYPE, TA, TB)                                                                        \
  asm volatile(                                                                                              \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                           \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." PTXTYPE "." PTXTYPE " "                                  \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                              \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "                    \
      "%32, %33, p, 1, 1, " TA ", " TB ";\n}\n"                                                              \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),      \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]),           \
        "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),           \
        "+f"(d[30]), "+f"(d[31])                                                                             \
      : "l"(da), "l"(db), "r"(sd));

IK_WGMMA_M64N64K16(__half, "f16")
IK_WGMMA_M64N64K16(__nv_bfloat16, "bf16")
#undef IK_WGMMA_M64N64K16
#undef IK_WGMMA_ASM
#endif  // IK_WGMMA

}  // namespace ptx
}  // namespace inception_kernels
