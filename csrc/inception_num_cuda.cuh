// Numeric traits of the tensor-core element types (see Num in inception_algo.h). CUDA
// headers only: included by the .cu files, never by host-only code.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "inception_algo.h"

namespace inception_kernels {

template <>
struct Num<__half> {
  using Acc = float;
  static constexpr bool kTensorCore = true;
  static IK_HD float to_acc(__half v) { return __half2float(v); }
  static IK_HD __half from_acc(float v) { return __float2half_rn(v); }
};

template <>
struct Num<__nv_bfloat16> {
  using Acc = float;
  static constexpr bool kTensorCore = true;
  static IK_HD float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
  static IK_HD __nv_bfloat16 from_acc(float v) { return __float2bfloat16_rn(v); }
};

}  // namespace inception_kernels
