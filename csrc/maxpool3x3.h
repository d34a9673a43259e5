// Launcher of the 3x3 / stride 1 / pad 1 max-pool kernel (the pool branch of an Inception
// module). Plain C++ + CUDA runtime types only, so that the .cu file that implements it
// compiles without any torch header (docs/design.md §6: compile time on a 2-core CI machine).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "dtype.h"

namespace inception_kernels {

// y[n, c, h, w] = max over the 3x3 window of x centered at (h, w), with -inf padding
// (NaN propagates, as in PyTorch). x and y are dense in the same memory format:
// channels_last (NHWC, the fast path) or contiguous NCHW. All offsets are 64-bit.
//
// Launches on `stream`; returns cudaGetLastError() after the launch (cudaSuccess when the
// tensor is empty and nothing was launched).
cudaError_t launch_maxpool3x3_s1(const void* x,  // [N, C, H, W] in the memory format below
                                 void* y,        // [N, C, H, W] same memory format as x
                                 DType dtype, int64_t n, int64_t c, int64_t h, int64_t w,
                                 bool channels_last, cudaStream_t stream);

}  // namespace inception_kernels
