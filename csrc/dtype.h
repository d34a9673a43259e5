// Element types the kernels instantiate; the torch binding (ops.cpp) maps at::ScalarType
// onto these. Plain C++, shared by every kernel header.
#pragma once

namespace inception_kernels {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

}  // namespace inception_kernels
