// Numeric traits of the tensor-core element types (see Num in inception_algo.h). CUDA
// headers only: included by the .cu files, never by host-only code.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "inception_algo.h"

namespace inception_kernels {

// Global-memory access of the 16-bit types: no scalar 16-bit load (LDG.E.U16) anywhere in the
// kernels. One element comes from the aligned 32-bit word that holds it (a 4-byte aligned word
// never crosses a page, so it is as safe to read as the element); eight from one 16-byte load.
// Both through the read-only path (ld.global.nc): no kernel reads global memory it writes.
// (load only reads tensors; copy8 also reads the halo in shared memory: a generic 16-byte load.)
template <class T>
struct HalfAccess {
  static_assert(sizeof(T) == 2, "16-bit types only");
  static IK_HD T load(const T* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const unsigned int* wp = reinterpret_cast<const unsigned int*>(a & ~static_cast<uintptr_t>(3));
#if defined(__CUDA_ARCH__)
    const uint32_t word = __ldg(wp);
#else
    const uint32_t word = *wp;
#endif
    const unsigned short bits = static_cast<unsigned short>((a & 2) ? word >> 16 : word & 0xFFFFu);
    T v;
    __builtin_memcpy(&v, &bits, 2);
    return v;
  }
  static IK_HD void copy8(T* dst, const T* src) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
  }
};

template <>
struct Num<__half> : HalfAccess<__half> {
  using Acc = float;
  static constexpr bool kTensorCore = true;
  static IK_HD float to_acc(__half v) { return __half2float(v); }
  static IK_HD __half from_acc(float v) { return __float2half_rn(v); }
};

template <>
struct Num<__nv_bfloat16> : HalfAccess<__nv_bfloat16> {
  using Acc = float;
  static constexpr bool kTensorCore = true;
  static IK_HD float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
  static IK_HD __nv_bfloat16 from_acc(float v) { return __float2bfloat16_rn(v); }
};

}  // namespace inception_kernels
