// Torch implementations of the CUDA kernels' ops in the `inception_kernels` namespace:
//
//   maxpool3x3_s1                  the pool branch alone (build-chain proof, issue 2).
//   cuda_fused_inception           the whole module forward in one or two launches (inception_fused_fwd.cu).
//   cuda_fused_inception_backward  its backward in at most three launches.
//   cuda_fused_inception_plan      their launch plan (tile, blocks, shared memory, threads) for reports.
//
// This file defines no schema: inception_kernels/ops.py defines these ops (schemas and fake
// impls, once, in Python) and this library only registers their CUDA kernels (and the plan op's
// CompositeExplicitAutograd kernel) with TORCH_LIBRARY_IMPL. The two fused ops are what the
// Python custom ops inception_kernels::fused_inception / fused_inception_backward run for
// backend="cuda"; the contracts they share with the Triton backend come from Python as
// arguments: y's memory format, the flat gradient layout and the weight-gradient split rule
// (inception_kernels/_layout.py).
//
// Argument checks (docs/design.md §5): the one user-facing check is Python's
// (inception_kernels/_checks.py, run by the ops and their fakes before any kernel). The
// TORCH_CHECKs here only guard this file's own memory accesses -- ranks, shapes, dtypes,
// devices and int ranges the kernels index with, and a gradient layout that stays inside its
// buffer -- so a direct call of these internal ops cannot read or write out of bounds.
// Only light ATen/c10 headers here (no torch/extension.h), to keep the build fast.

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/safe_numerics.h>
#include <torch/library.h>

#include <cuda.h>
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <climits>
#include <cstring>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "inception_fused.h"
#include "maxpool3x3.h"

namespace inception_kernels {
namespace {

// The rank and dtypes the kernel indexes and instantiates.
void check_maxpool_input(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "maxpool3x3_s1: x must be 4-D [N, C, H, W], got ", x.dim(),
              "-D with shape ", x.sizes());
  const auto st = x.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16,
              "maxpool3x3_s1: x must be float32, float16 or bfloat16, got ", st);
}

// channels_last when x is (as PyTorch's own ops propagate it), else contiguous NCHW (the fake
// impl in ops.py: torch._prims_common.suggest_memory_format).
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



// ---------------------------------------------------------------------------------------
// The fused Inception module
// ---------------------------------------------------------------------------------------

using OptTensor = std::optional<at::Tensor>;
constexpr const char* kConvNames[kNumConvs] = {"w1", "w3r", "w3", "w5r", "w5", "wp"};
constexpr const char* kBiasNames[kNumConvs] = {"b1", "b3r", "b3", "b5r", "b5", "bp"};

struct ModuleArgs {
  const at::Tensor* w[kNumConvs];
  const OptTensor* b[kNumConvs];
};

// The op's weights / biases lists as ModuleArgs (the lists must outlive it): exactly six each.
ModuleArgs module_args(const char* op, at::TensorList weights, const c10::List<OptTensor>& biases,
                       std::vector<OptTensor>* bias_store) {
  TORCH_CHECK(weights.size() == kNumConvs && biases.size() == kNumConvs, op,
              ": weights and biases must hold 6 entries each (w1, w3r, w3, w5r, w5, wp), got ", weights.size(),
              " and ", biases.size());
  *bias_store = std::vector<OptTensor>(biases.begin(), biases.end());
  ModuleArgs a{};
  for (int i = 0; i < kNumConvs; ++i) a.w[i] = &weights[i], a.b[i] = &(*bias_store)[i];
  return a;
}

DType fused_dtype(at::ScalarType st) {
  switch (st) {
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    case at::kDouble: return DType::kFloat64;
    default: return DType::kFloat32;  // the only other dtype check_module lets through
  }
}

// The dtypes the fused kernels instantiate.
void check_fused_dtype(const char* op, const char* name, at::ScalarType st) {
  TORCH_CHECK(st == at::kHalf || st == at::kBFloat16 || st == at::kFloat || st == at::kDouble, op, ": ", name,
              " must be float16, bfloat16, float32 or float64, got ", st);
}

// The largest kernel size the ops take (their bound since the first version; with it the
// tile plan's halo arithmetic, (tile + K - 1)^2 pixels, stays small).
constexpr int64_t kMaxKernel = 63;

void check_kernel_sizes(const char* op, int64_t k3, int64_t k5) {
  for (int64_t k : {k3, k5})
    TORCH_CHECK(k > 0 && k % 2 == 1 && k <= kMaxKernel, op, ": kernel sizes must be odd and between 1 and ",
                kMaxKernel, ", got (", k3, ", ", k5, ")");
}

// Integer range checks, run on every integer an op takes before any arithmetic on it (the
// kernels keep channel counts, rows and columns in int, and an overflowed product would
// pass a later bound check).
constexpr int64_t kIntLimit = INT_MAX;            // 2^31 - 1
constexpr int64_t kMaxPixels = int64_t{1} << 31;  // N * H * W, as the Triton launcher's limit

// A channel count the kernels store in an int: 1 <= c <= 2^31 - 1.
void check_channels(const char* op, const char* name, int64_t c) {
  TORCH_CHECK(c > 0 && c <= kIntLimit, op, ": ", name, " must be between 1 and 2^31 - 1, got ", c);
}

// N * H * W without overflow: each of N, H, W non-negative (H, W >= min_hw) and the pixel count
// (and H * W) below 2^31. Returns N * H * W.
int64_t check_pixels(const char* op, int64_t n, int64_t h, int64_t w, int64_t min_hw) {
  int64_t hw = 0, nhw = 0;
  const bool ok = n >= 0 && h >= min_hw && w >= min_hw && !c10::mul_overflows(h, w, &hw) &&
                  !c10::mul_overflows(hw, n, &nhw) && hw < kMaxPixels && nhw < kMaxPixels;
  TORCH_CHECK(ok, op, ": need N >= 0, H >= ", min_hw, ", W >= ", min_hw,
              " and N * H * W below 2^31 pixels (H * W too), got N=", n, " H=", h, " W=", w);
  return nhw;
}

// The kernels' accumulator type (Num<T>::Acc): fp64 for fp64, else fp32.
at::ScalarType acc_type(at::ScalarType st) { return st == at::kDouble ? at::kDouble : at::kFloat; }
int elem_bytes(at::ScalarType st) { return static_cast<int>(c10::elementSize(st)); }
int acc_bytes(at::ScalarType st) { return elem_bytes(acc_type(st)); }

// A tensor the op reads: strided, on x's device, in x's dtype, of the given rank.
void check_operand(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x, int64_t dim) {
  TORCH_CHECK(t.layout() == at::kStrided, op, ": ", name, " must be a strided (dense) tensor, got layout ",
              t.layout());
  TORCH_CHECK(t.dim() == dim, op, ": ", name, " must be ", dim, "-D, got ", t.dim(), "-D with shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " must have x's dtype ", x.scalar_type(),
              ", got ", t.scalar_type());
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " must be on x's device ", x.device(), ", got ",
              t.device());
}

// The memory guard of both fused ops: x, the six convs (shapes consistent with x and with each
// other, kernel sizes k3 / k5) and the biases as the kernels index them. Returns whether the
// activation is ReLU (Python's check refuses other spellings than "relu" / "none").
bool check_module(const char* op, const at::Tensor& x, const ModuleArgs& a, int64_t k3, int64_t k5,
                  std::string_view activation) {
  TORCH_CHECK(x.layout() == at::kStrided, op, ": x must be a strided (dense) tensor, got layout ", x.layout());
  TORCH_CHECK(x.dim() == 4, op, ": x must be 4-D [N, Cin, H, W], got ", x.dim(), "-D with shape ", x.sizes());
  check_fused_dtype(op, "x", x.scalar_type());
  check_channels(op, "x's channel count (dim 1)", x.size(1));
  check_pixels(op, x.size(0), x.size(2), x.size(3), 0);
  check_kernel_sizes(op, k3, k5);
  const int64_t ks[kNumConvs] = {1, 1, k3, 1, k5, 1};
  for (int i = 0; i < kNumConvs; ++i) {
    const at::Tensor& w = *a.w[i];
    check_operand(op, kConvNames[i], w, x, 4);
    const int64_t cin = (i == kW3 ? a.w[kW3r]->size(0) : i == kW5 ? a.w[kW5r]->size(0) : x.size(1));
    TORCH_CHECK(w.size(0) > 0 && w.size(1) == cin && w.size(2) == ks[i] && w.size(3) == ks[i], op, ": ",
                kConvNames[i], " must have shape [Cout > 0, ", cin, ", ", ks[i], ", ", ks[i], "], got ", w.sizes());
    check_channels(op, kConvNames[i], w.size(0));
    // The kernels index a conv's reduction (tap, input channel) with an int.
    TORCH_CHECK(cin * ks[i] * ks[i] <= kIntLimit, op, ": ", kConvNames[i], "'s reduction length Cin * K * K = ", cin,
                " * ", ks[i], " * ", ks[i], " must be at most 2^31 - 1");
    if (a.b[i]->has_value()) {
      const at::Tensor& b = **a.b[i];
      check_operand(op, kBiasNames[i], b, x, 1);
      TORCH_CHECK(b.size(0) == w.size(0), op, ": ", kBiasNames[i], " must have shape [", w.size(0), "], got ",
                  b.sizes());
    }
  }
  // Sums the kernels keep in an int: y's channels (tiling::branch_offsets) and the reduce
  // gradients' row (gr_cols); each count is < 2^31, so the int64 sums cannot overflow.
  const int64_t ctot = a.w[kW1]->size(0) + a.w[kW3]->size(0) + a.w[kW5]->size(0) + a.w[kWp]->size(0);
  TORCH_CHECK(ctot <= kIntLimit, op, ": y's channel count (the output channels of w1, w3, w5 and wp) must be at most ",
              "2^31 - 1, got ", ctot);
  const int64_t cred = a.w[kW3r]->size(0) + a.w[kW5r]->size(0);
  TORCH_CHECK(cred <= kIntLimit, op, ": the reduce channels of w3r and w5r must sum to at most 2^31 - 1, got ", cred);
  return activation == "relu";
}

// Where the CUDA implementations run: a CUDA x, every operand on its device (checked above).
void check_cuda(const char* op, const at::Tensor& x) {
  TORCH_CHECK(x.is_cuda(), op, ": x must be a CUDA tensor, got device ", x.device());
}

// y's channels: c1 + c3 + c5 + cp.
int64_t out_channels(const ModuleArgs& a) {
  return a.w[kW1]->size(0) + a.w[kW3]->size(0) + a.w[kW5]->size(0) + a.w[kWp]->size(0);
}

// Whether a 4-D tensor's dim-1 chunks are aligned for the kernels' 16-byte copies (plan::chunked).
bool chunked(const at::Tensor& t) {
  return plan::chunked(t.const_data_ptr(), t.sizes().data(), t.strides().data(), static_cast<int>(t.element_size()));
}

TensorRef tensor_ref(const at::Tensor& t) {
  return TensorRef{t.const_data_ptr(), {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}, chunked(t)};
}

OutRef out_ref(at::Tensor& t) {
  return OutRef{t.mutable_data_ptr(), {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}};
}

void fill_convs(ConvRef* conv, const ModuleArgs& a) {
  for (int i = 0; i < kNumConvs; ++i) {
    const at::Tensor& w = *a.w[i];
    const bool has_bias = a.b[i]->has_value();
    conv[i] = ConvRef{w.const_data_ptr(),
                      {w.stride(0), w.stride(1), w.stride(2), w.stride(3)},
                      has_bias ? (*a.b[i])->const_data_ptr() : nullptr,
                      has_bias ? (*a.b[i])->stride(0) : 0,
                      static_cast<int>(w.size(0)), static_cast<int>(w.size(1)), static_cast<int>(w.size(2)),
                      chunked(w)};
  }
}

// Largest dynamic shared memory one block of the current device may opt in to.
int64_t smem_optin_limit(const at::Tensor& x) {
  int bytes = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, x.get_device()));
  return bytes;
}

// Whether x's device runs the wgmma build of the kernels (tiling::wgmma_build): TMA, and the
// forward kernel's static shared memory.
bool wgmma_device(const at::Tensor& x) {
  int major = 0, minor = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, x.get_device()));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, x.get_device()));
  return tiling::wgmma_build(10 * major + minor);
}

// plan::TmaEncode through the driver's cuTensorMapEncodeTiled, looked up through the runtime (the
// extension does not link libcuda): 16-bit elements copied as UINT16, the 128-byte swizzle of
// the core's tiles, zeros outside the tensor. False where the driver has no such entry point or
// refuses the map: the operand then goes by cp.async.
bool encode_tma(const TmaSpec& s, TmaMap* out) {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  static_assert(sizeof(CUtensorMap) == sizeof(TmaMap) && alignof(TmaMap) >= alignof(CUtensorMap),
                "TmaMap holds a CUtensorMap");
  if (encode == nullptr) return false;
  CUtensorMap map;
  const cuuint64_t dims[4] = {s.dims[0], s.dims[1], s.dims[2], s.dims[3]};
  const cuuint64_t strides[3] = {s.strides[0], s.strides[1], s.strides[2]};
  const cuuint32_t box[4] = {s.box[0], s.box[1], s.box[2], s.box[3]}, unit[4] = {1, 1, 1, 1};
  if (encode(&map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 4, const_cast<void*>(s.base), dims, strides, box, unit,
             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
    return false;
  std::memcpy(out, &map, sizeof map);
  return true;
}

// The reduce outputs r3 / r5 (post-activation), channels_last: saved for the backward, or the
// two-launch forward's workspaces.
std::pair<at::Tensor, at::Tensor> reduce_outputs(const at::Tensor& x, const ModuleArgs& a) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  const auto cl = x.options().memory_format(at::MemoryFormat::ChannelsLast);
  return {at::empty({n, a.w[kW3r]->size(0), h, w}, cl), at::empty({n, a.w[kW5r]->size(0), h, w}, cl)};
}

// y in the memory format Python chose (_layout.output_memory_format); the saved reduce outputs
// channels_last (the fake impl in ops.py, _forward_outputs, says the same).
std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_forward_outputs(const at::Tensor& x, const ModuleArgs& a,
                                                                       bool save_reduce, at::MemoryFormat y_format) {
  TORCH_CHECK(y_format == at::MemoryFormat::Contiguous || y_format == at::MemoryFormat::ChannelsLast,
              "cuda_fused_inception: y_format must be contiguous_format or channels_last, got ", y_format);
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  at::Tensor y = at::empty({n, out_channels(a), h, w}, x.options().memory_format(y_format));
  if (!save_reduce) return {y, at::empty({0}, x.options()), at::empty({0}, x.options())};
  auto [r3, r5] = reduce_outputs(x, a);
  return {y, r3, r5};
}

constexpr const char* kFwdOp = "cuda_fused_inception";
constexpr const char* kBwdOp = "cuda_fused_inception_backward";

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_forward_cuda(const at::Tensor& x, at::TensorList weights,
                                                                    const c10::List<OptTensor>& biases, int64_t k3,
                                                                    int64_t k5, c10::string_view activation,
                                                                    bool save_reduce, bool two_launch,
                                                                    at::MemoryFormat y_format) {
  std::vector<OptTensor> bias_store;
  const ModuleArgs a = module_args(kFwdOp, weights, biases, &bias_store);
  const bool relu = check_module(kFwdOp, x, a, k3, k5, std::string_view(activation.data(), activation.size()));
  check_cuda(kFwdOp, x);
  const c10::cuda::CUDAGuard guard(x.device());
  auto [y, r3, r5] = fused_forward_outputs(x, a, save_reduce, y_format);
  if (y.numel() == 0) return {y, r3, r5};
  FwdParams p{};
  p.x = tensor_ref(x);
  p.y = out_ref(y);
  if (save_reduce) p.r[0] = out_ref(r3), p.r[1] = out_ref(r5);
  fill_convs(p.conv, a);
  p.n = x.size(0), p.h = static_cast<int>(x.size(2)), p.w = static_cast<int>(x.size(3)), p.relu = relu;
  const auto st = x.scalar_type();
  int64_t smem = 0;
  const int64_t limit = smem_optin_limit(x);
  const bool wgmma = wgmma_device(x);
  TORCH_CHECK(plan::forward(p, elem_bytes(st), acc_bytes(st), limit, wgmma, &smem), kFwdOp,
              ": the reduce outputs of one tile (", a.w[kW3r]->size(0), " and ", a.w[kW5r]->size(0), " channels, ", st,
              ") do not fit in the ", limit, " bytes of shared memory a block may use on this device");
  TORCH_CHECK(tiling::num_fwd_jobs(p.n, p.tiles) <= INT_MAX, kFwdOp, ": too many tiles for one launch (batch ",
              p.n, ", ", p.h, "x", p.w, ")");
  plan::forward_tma(p, elem_bytes(st), wgmma, encode_tma);
  // Two launches pass the reduce outputs from stage 1 to stage 2: the saved ones, or workspaces
  // from PyTorch's caching allocator (stream-ordered) in the layout the saved ones have.
  at::Tensor work3, work5;
  if (two_launch && !save_reduce) {
    std::tie(work3, work5) = reduce_outputs(x, a);
    p.r[0] = out_ref(work3), p.r[1] = out_ref(work5);
  }
  int stages[2];
  for (int i = 0, launches = plan::forward_stages(two_launch, stages); i < launches; ++i) {
    p.stage = stages[i];
    C10_CUDA_CHECK(launch_inception_forward(p, fused_dtype(st), smem, c10::cuda::getCurrentCUDAStream()));
  }
  return {y, r3, r5};
}

// The backward's saved tensors (memory guards), and the plan of its launches from the gradient
// layout and the weight-gradient split rule Python passed (sizes only).
BwdParams plan_backward(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& y, const at::Tensor& r3,
                        const at::Tensor& r5, const ModuleArgs& a, int64_t k3, int64_t k5, c10::string_view activation,
                        bool need_dx, at::IntArrayRef grad_layout, at::IntArrayRef wgrad_split) {
  const bool relu = check_module(kBwdOp, x, a, k3, k5, std::string_view(activation.data(), activation.size()));
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3), ctot = out_channels(a);
  const std::pair<const char*, const at::Tensor*> saved[] = {{"grad_y", &grad_y}, {"y", &y}, {"r3", &r3}, {"r5", &r5}};
  const int64_t channels[] = {ctot, ctot, a.w[kW3r]->size(0), a.w[kW5r]->size(0)};
  for (int i = 0; i < 4; ++i) {
    check_operand(kBwdOp, saved[i].first, *saved[i].second, x, 4);
    const auto sz = saved[i].second->sizes();
    TORCH_CHECK(sz[0] == n && sz[1] == channels[i] && sz[2] == h && sz[3] == w, kBwdOp, ": ", saved[i].first,
                " must have shape [", n, ", ", channels[i], ", ", h, ", ", w, "], got ", sz);
  }
  TORCH_CHECK(wgrad_split.size() == 3 && wgrad_split[0] > 0 && wgrad_split[1] > 0 && wgrad_split[2] > 0 &&
                  wgrad_split[0] <= kIntLimit && wgrad_split[1] <= kIntLimit && wgrad_split[2] <= kIntLimit,
              kBwdOp, ": wgrad_split must be [target_jobs, min_pixels, max_splits], each in [1, 2^31 - 1], got ",
              wgrad_split);
  BwdParams p{};
  fill_convs(p.conv, a);
  p.n = n, p.h = static_cast<int>(h), p.w = static_cast<int>(w), p.relu = relu;
  TORCH_CHECK(grad_layout.size() == plan::kGradLayoutInts && plan::grad_layout_fits(p, grad_layout.data()), kBwdOp,
              ": grad_layout must be ", plan::kGradLayoutInts, " ints (_layout.GradLayout.as_ints) placing every ",
              "computed gradient inside the buffer, got ", grad_layout);
  plan::backward(p, need_dx, grad_layout.data(), tiling::PixelSplitRule{wgrad_split[0], wgrad_split[1], wgrad_split[2]});
  return p;
}

std::tuple<at::Tensor, at::Tensor> backward_outputs(const at::Tensor& x, const BwdParams& p, bool need_dx) {
  at::Tensor dx = need_dx ? at::empty_like(x, at::MemoryFormat::Preserve) : at::empty({0}, x.options());
  return {dx, at::empty({p.p_total}, x.options())};
}

std::tuple<at::Tensor, at::Tensor> fused_backward_cuda(const at::Tensor& grad_y, const at::Tensor& x,
                                                       const at::Tensor& y, const at::Tensor& r3, const at::Tensor& r5,
                                                       at::TensorList weights, const c10::List<OptTensor>& biases,
                                                       int64_t k3, int64_t k5, c10::string_view activation,
                                                       bool need_dx, at::IntArrayRef grad_layout,
                                                       at::IntArrayRef wgrad_split) {
  std::vector<OptTensor> bias_store;
  const ModuleArgs a = module_args(kBwdOp, weights, biases, &bias_store);
  BwdParams p = plan_backward(grad_y, x, y, r3, r5, a, k3, k5, activation, need_dx, grad_layout, wgrad_split);
  check_cuda(kBwdOp, x);
  const c10::cuda::CUDAGuard guard(x.device());
  auto [dx, grads] = backward_outputs(x, p, need_dx);
  const int64_t jobs[] = {p.reduce_jobs[0] + p.reduce_jobs[1], p.seg_end[tiling::kNumSegments - 1]};
  for (int64_t j : jobs)
    TORCH_CHECK(j <= INT_MAX, kBwdOp, ": too many tiles for one launch (batch ", p.n, ", ", p.h, "x", p.w, ")");
  const auto st = x.scalar_type();
  const int64_t pixels = p.n * p.h * static_cast<int64_t>(p.w);
  // Workspaces, from PyTorch's caching allocator (stream-ordered; graph-capture safe).
  at::Tensor gr = at::empty({jobs[0] > 0 ? pixels * gr_cols(p) : 0}, x.options());
  at::Tensor partial = at::empty({p.p_total > 0 ? p.split.splits * p.p_total : 0},
                                 x.options().dtype(acc_type(st)));
  p.gy = tensor_ref(grad_y), p.x = tensor_ref(x), p.y = tensor_ref(y);
  p.r[0] = tensor_ref(r3), p.r[1] = tensor_ref(r5);
  p.gr = gr.mutable_data_ptr();
  if (dx.numel() > 0) p.dx = out_ref(dx);
  p.partial = partial.mutable_data_ptr();
  p.grads = grads.mutable_data_ptr();
  plan::backward_tma(p, elem_bytes(st), wgmma_device(x), encode_tma);
  C10_CUDA_CHECK(launch_inception_backward(p, fused_dtype(st), c10::cuda::getCurrentCUDAStream()));
  return {dx, grads};
}

// The launch plan of a module, for reports (no tensor, no device): the forward's tile,
// dynamic shared memory and blocks on a device of compute capability cc (10 * major + minor;
// it picks the build, tiling::wgmma_build) whose blocks may opt in to smem_limit bytes, and
// the backward kernels' dynamic shared memory. [th, tw, fwd_smem, fwd_blocks,
// reduce_grad_smem, grads_smem, threads]; th = tw = 0 when no tile fits. threads is the block size
// of all three kernels (tiling::kThreads), which reports read rather than copy.
std::vector<int64_t> fused_plan(int64_t n, int64_t h, int64_t w, int64_t c3r, int64_t k3, int64_t c5r, int64_t k5,
                                at::ScalarType dtype, int64_t smem_limit, int64_t cc) {
  constexpr const char* op = "cuda_fused_inception_plan";
  check_pixels(op, n, h, w, 1);
  check_channels(op, "c3r", c3r);
  check_channels(op, "c5r", c5r);
  TORCH_CHECK(c3r + c5r <= kIntLimit, op, ": the reduce channels c3r + c5r must sum to at most 2^31 - 1, got ",
              c3r + c5r);
  check_kernel_sizes(op, k3, k5);
  check_fused_dtype(op, "dtype", dtype);
  TORCH_CHECK(smem_limit >= 0, op, ": smem_limit must be a byte count >= 0, got ", smem_limit);
  TORCH_CHECK(cc >= 80 && cc < 1000, op, ": cc must be a compute capability 10 * major + minor >= 80, got ", cc);
  const bool wgmma = tiling::wgmma_build(static_cast<int>(cc));
  FwdParams p{};
  p.conv[kW3r].cout = static_cast<int>(c3r), p.conv[kW5r].cout = static_cast<int>(c5r);
  p.conv[kW3].k = static_cast<int>(k3), p.conv[kW5].k = static_cast<int>(k5);
  p.n = n, p.h = static_cast<int>(h), p.w = static_cast<int>(w);
  int64_t smem = 0;
  const int eb = elem_bytes(dtype), ab = acc_bytes(dtype);
  const int64_t bwd_reduce = tiling::staging_bytes(eb, ab), bwd_grads = tiling::bwd_smem_bytes(eb, ab);
  if (!plan::forward(p, eb, ab, smem_limit, wgmma, &smem)) return {0, 0, 0, 0, bwd_reduce, bwd_grads, tiling::kThreads};
  return {p.tiles.th, p.tiles.tw, smem, tiling::num_fwd_jobs(n, p.tiles), bwd_reduce, bwd_grads, tiling::kThreads};
}

}  // namespace

// The schemas are inception_kernels/ops.py's (torch.library); here only the kernels.
TORCH_LIBRARY_IMPL(inception_kernels, CUDA, m) {
  m.impl("maxpool3x3_s1", &maxpool3x3_s1_cuda);
  m.impl("cuda_fused_inception", &fused_forward_cuda);
  m.impl("cuda_fused_inception_backward", &fused_backward_cuda);
}

// No tensor argument: the plan is host arithmetic, for every (or no) device.
TORCH_LIBRARY_IMPL(inception_kernels, CompositeExplicitAutograd, m) {
  m.impl("cuda_fused_inception_plan", &fused_plan);
}

}  // namespace inception_kernels
