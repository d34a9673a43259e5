// Torch bindings of the CUDA kernels: op schemas of the `inception_kernels` namespace and
// their CUDA (and Meta) implementations.
//
// TORCH_LIBRARY_FRAGMENT, not TORCH_LIBRARY: the Python side (inception_kernels/ops.py)
// defines further ops of the same namespace with torch.library.custom_op.
// Only light ATen/c10 headers here (no torch/extension.h), to keep the build fast.

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "maxpool3x3.h"

namespace inception_kernels {
namespace {

// Checks shared by the CUDA and Meta implementations: rank and dtype.
void check_maxpool_input(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "maxpool3x3_s1: x must be 4-D [N, C, H, W], got ", x.dim(),
              "-D with shape ", x.sizes());
  const auto st = x.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16,
              "maxpool3x3_s1: x must be float32, float16 or bfloat16, got ", st);
}

// channels_last when x is (as PyTorch's own ops propagate it), else contiguous NCHW.
at::MemoryFormat output_format(const at::Tensor& x) { return x.suggest_memory_format(); }

DType to_kernel_dtype(at::ScalarType st) {
  switch (st) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kHalf:
      return DType::kFloat16;
    default:
      return DType::kBFloat16;  // the only other dtype check_maxpool_input lets through
  }
}

at::Tensor maxpool3x3_s1_cuda(const at::Tensor& x) {
  TORCH_CHECK(x.is_cuda(), "maxpool3x3_s1: x must be a CUDA tensor, got device ", x.device());
  check_maxpool_input(x);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto fmt = output_format(x);
  const at::Tensor xc = x.contiguous(fmt);  // no copy when x is already dense in fmt
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(fmt));
  C10_CUDA_CHECK(launch_maxpool3x3_s1(xc.const_data_ptr(), y.mutable_data_ptr(),
                                      to_kernel_dtype(x.scalar_type()), x.size(0), x.size(1),
                                      x.size(2), x.size(3), fmt == at::MemoryFormat::ChannelsLast,
                                      c10::cuda::getCurrentCUDAStream()));
  return y;
}

// Shape/stride propagation for torch.compile and meta tensors: same layout as the CUDA op.
at::Tensor maxpool3x3_s1_meta(const at::Tensor& x) {
  check_maxpool_input(x);
  return at::empty(x.sizes(), x.options().memory_format(output_format(x)));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(inception_kernels, m) {
  m.def("maxpool3x3_s1(Tensor x) -> Tensor");
}

TORCH_LIBRARY_IMPL(inception_kernels, CUDA, m) {
  m.impl("maxpool3x3_s1", &maxpool3x3_s1_cuda);
}

TORCH_LIBRARY_IMPL(inception_kernels, Meta, m) {
  m.impl("maxpool3x3_s1", &maxpool3x3_s1_meta);
}

}  // namespace inception_kernels
