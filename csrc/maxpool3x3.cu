// 3x3 / stride 1 / pad 1 max-pool: the one small real kernel that proves the build chain
// (setup.py and CMakeLists.txt, sm_80 + sm_90). CUDA headers only; see maxpool3x3.h.
//
// One thread per output element, grid-stride loop, the linear index walked in the tensor's
// memory order so that neighbouring threads touch neighbouring addresses: in NHWC the
// channel is fastest (coalesced 9 loads per element), in NCHW the column is.

#include "maxpool3x3.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace inception_kernels {
namespace {

constexpr int kThreads = 256;
// Enough blocks to fill an H100 many times over; larger tensors loop (grid-stride).
constexpr int64_t kMaxBlocks = 132 * 64;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Every value of the window is exactly representable in fp32, so the max in fp32 is exact.
template <typename T, bool kChannelsLast>
__global__ void __launch_bounds__(kThreads)
    maxpool3x3_s1_kernel(const T* __restrict__ x,  // [N, C, H, W] (NHWC when kChannelsLast)
                         T* __restrict__ y,        // [N, C, H, W] same memory format
                         int64_t n, int64_t c, int64_t h, int64_t w) {
  const int64_t total = n * c * h * w;
  // Strides of the H and W dims in the memory format.
  const int64_t sw = kChannelsLast ? c : 1;
  const int64_t sh = w * sw;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t ci, wi, hi, rest;
    if (kChannelsLast) {  // i = ((ni * H + hi) * W + wi) * C + ci
      ci = i % c;
      rest = i / c;
      wi = rest % w;
      rest /= w;
      hi = rest % h;
    } else {  // i = ((ni * C + ci) * H + hi) * W + wi
      wi = i % w;
      rest = i / w;
      hi = rest % h;
      rest /= h;
      ci = rest % c;
    }
    // Offset of (ni, ci, hi, wi) is i itself (dense in its memory format).
    float m = -INFINITY;
#pragma unroll
    for (int dh = -1; dh <= 1; ++dh) {
      const int64_t hh = hi + dh;
      if (hh < 0 || hh >= h) continue;
#pragma unroll
      for (int dw = -1; dw <= 1; ++dw) {
        const int64_t ww = wi + dw;
        if (ww < 0 || ww >= w) continue;
        const float v = to_float(x[i + dh * sh + dw * sw]);
        if (v > m || isnan(v)) m = v;  // NaN wins, as in PyTorch's max_pool2d
      }
    }
    y[i] = from_float<T>(m);
  }
}

template <typename T>
void launch_typed(const void* x, void* y, int64_t n, int64_t c, int64_t h, int64_t w,
                  bool channels_last, cudaStream_t stream) {
  const int64_t total = n * c * h * w;
  int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  const dim3 grid(static_cast<unsigned>(blocks));
  const T* xt = static_cast<const T*>(x);
  T* yt = static_cast<T*>(y);
  if (channels_last) {
    maxpool3x3_s1_kernel<T, true><<<grid, kThreads, 0, stream>>>(xt, yt, n, c, h, w);
  } else {
    maxpool3x3_s1_kernel<T, false><<<grid, kThreads, 0, stream>>>(xt, yt, n, c, h, w);
  }
}

}  // namespace

cudaError_t launch_maxpool3x3_s1(const void* x, void* y, DType dtype, int64_t n, int64_t c,
                                 int64_t h, int64_t w, bool channels_last, cudaStream_t stream) {
  if (n * c * h * w == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kFloat32:
      launch_typed<float>(x, y, n, c, h, w, channels_last, stream);
      break;
    case DType::kFloat16:
      launch_typed<__half>(x, y, n, c, h, w, channels_last, stream);
      break;
    case DType::kBFloat16:
      launch_typed<__nv_bfloat16>(x, y, n, c, h, w, channels_last, stream);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace inception_kernels
