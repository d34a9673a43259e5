// CPU emulator of the fused CUDA C++ kernels, for tests without a GPU
// (tests/test_cuda_emulator.py compiles it with the host compiler; no CUDA toolkit needed).
//
// It runs the kernels' own job functions (csrc/inception_algo.h: tile/halo index math,
// operand loaders, epilogues, planning of grids and the gradient layout) for every job of
// every launch, in one of two builds:
//   - default: a plain-loop Core computes each GEMM tile;
//   - IK_EMU_DEVICE_CORE: the device's own DeviceCore (csrc/inception_core.cuh) runs each
//     block on 128 std::threads with a std::barrier for __syncthreads and CPU versions of the
//     PTX instructions (cuda_shim.h: cp.async groups, ldmatrix, mma.sync and -- with IK_WGMMA,
//     as on sm_90a -- wgmma through its matrix descriptors): pipeline, swizzled tiles,
//     fragment addressing, SIMT micro-tiles and barriers included.
// What neither can check: real hardware (timing, the instructions' own rounding order).
//
// Entry points (extern "C", for ctypes). dtype: 0 float32 (SIMT path), 3 float64 (SIMT),
// 1 float16 (the tensor-core path, as EmuHalf: IEEE binary16 storage, fp32 arithmetic).

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

// The tensor-core path's element type in the emulator: IEEE binary16, 2 bytes like __half,
// so that chunk sizes, swizzled offsets and fragment packing are the device's.
struct EmuHalf {
  _Float16 v;
};
static_assert(sizeof(EmuHalf) == 2, "EmuHalf is a 16-bit type");

#if defined(IK_EMU_DEVICE_CORE)
#include "cuda_shim.h"
#endif

#include "../../csrc/inception_algo.h"

namespace inception_kernels {
template <>
struct Num<EmuHalf> : PlainAccess<EmuHalf> {
  using Acc = float;
  static constexpr bool kTensorCore = true;
  static float to_acc(EmuHalf v) { return static_cast<float>(v.v); }
  static EmuHalf from_acc(float v) { return EmuHalf{static_cast<_Float16>(v)}; }
};
}  // namespace inception_kernels

#if defined(IK_EMU_DEVICE_CORE)
#include "tma_shim.h"
#include "../../csrc/inception_core.cuh"
#endif

namespace ik = inception_kernels;
namespace tl = inception_kernels::tiling;

namespace {

// Shared memory starts as all-ones bytes (NaN in every float type): a job that read shared
// memory it did not write would turn its results to NaN.
constexpr char kGarbage = static_cast<char>(0xFF);

// Whether the build emulated is the wgmma one (tiling::wgmma_build): TMA maps, and the forward
// kernel's static shared memory kept out of the plan's budget.
#if defined(IK_WGMMA)
constexpr bool kWgmma = true;
#else
constexpr bool kWgmma = false;
#endif

// An operand as a dense [rows][kdim] matrix, gathered chunk by chunk (ik::fetch_chunk).
template <class T, class Op>
std::vector<T> dense_operand(const Op& op, int rows, int kdim) {
  std::vector<T> out(static_cast<size_t>(rows) * kdim);
  alignas(16) T v[tl::kChunk];
  if (Op::kKMajor) {
    for (int r = 0; r < rows; ++r)
      for (int k = 0; k < kdim; k += tl::kChunk) {
        ik::fetch_chunk<T>(op, r, k, tl::imin(tl::kChunk, kdim - k), v);
        for (int j = 0; j < tl::kChunk && k + j < kdim; ++j) out[static_cast<size_t>(r) * kdim + k + j] = v[j];
      }
  } else {
    for (int k = 0; k < kdim; ++k)
      for (int r = 0; r < rows; r += tl::kChunk) {
        ik::fetch_chunk<T>(op, r, k, tl::kChunk, v);
        for (int j = 0; j < tl::kChunk; ++j) out[static_cast<size_t>(r + j) * kdim + k] = v[j];
      }
  }
  return out;
}

// The plain-loop Core: C[m, n] = sum_k A(m, k) * B(k, n) over the whole kBM x bn tile.
template <class T>
struct EmuCore {
  template <class F>
  void parallel_for(int count, const F& fn) const {
    for (int i = 0; i < count; ++i) fn(i);
  }

  template <class A, class E>
  void reduce_rows(const A& a, int kdim, const E& epi) const {
    const std::vector<T> am = dense_operand<T>(a, tl::kBM, kdim);
    for (int m = 0; m < tl::kBM; ++m) {
      ik::AccT<T> s = 0;
      for (int k = 0; k < kdim; ++k) s += ik::Num<T>::to_acc(am[static_cast<size_t>(m) * kdim + k]);
      epi(m, 0, s);
    }
  }

  template <class A, class B, class E>
  void gemm(const A& a, const B& b, int kdim, int bn, const E& epi) const {
    using Acc = ik::AccT<T>;
    const std::vector<T> am = dense_operand<T>(a, tl::kBM, kdim), bm = dense_operand<T>(b, bn, kdim);  // [m][k], [n][k]
    for (int m = 0; m < tl::kBM; ++m)
      for (int n0 = 0; n0 < bn; n0 += tl::kChunk) {  // chunks of 8 columns, as the tensor-core core
        Acc acc[tl::kChunk] = {};
        for (int n = n0; n < n0 + tl::kChunk; ++n)
          for (int k = 0; k < kdim; ++k)
            acc[n - n0] += ik::Num<T>::to_acc(am[static_cast<size_t>(m) * kdim + k]) *
                           ik::Num<T>::to_acc(bm[static_cast<size_t>(n) * kdim + k]);
        ik::epilogue_chunk(epi, m, n0, acc);
      }
  }
};

// Runs one thread block: body(core) with the block's shared memory. Loop build: once, with EmuCore. Device-core
// build: on 128 threads, each with its threadIdx, with the device's DeviceCore; `tma`: with the
// ring's TMA barriers (the forward kernel's; used by the wgmma build where p.tma has maps).
template <class T, bool kTwoWidths = false, class Body>
void run_block(std::vector<char>& smem, const Body& body, bool tma = false) {
#if defined(IK_EMU_DEVICE_CORE)
  std::barrier<> barrier(tl::kThreads);
  std::barrier<> w0(32), w1(32), w2(32), w3(32);
  cuda_shim::block_barrier = &barrier;
  cuda_shim::warp_barrier[0] = &w0, cuda_shim::warp_barrier[1] = &w1;
  cuda_shim::warp_barrier[2] = &w2, cuda_shim::warp_barrier[3] = &w3;
  cuda_shim::smem_base = smem.data();
  uint64_t bars[tl::kStages];  // as the kernel's static __shared__ array
  std::vector<std::thread> threads;
  for (unsigned tid = 0; tid < static_cast<unsigned>(tl::kThreads); ++tid)
    threads.emplace_back([&, tid] {
      cuda_shim::thread_idx = Dim3{tid, 0, 0};
      const ik::DeviceCore<T, kTwoWidths> core{smem.data(), tma ? bars : nullptr};
      core.init_tma();
      body(core);
    });
  for (auto& t : threads) t.join();
#else
  (void)smem, (void)tma;  // EmuCore keeps its operands in host vectors
  body(EmuCore<T>{});
#endif
}

// A tensor of sizes (n, c, h, w) and strides s, with its chunk flag as ops.cpp computes it.
template <class T>
ik::TensorRef tref(const void* p, const int64_t* s, int64_t n, int64_t c, int64_t h, int64_t w) {
  const int64_t sizes[4] = {n, c, h, w};
  return ik::TensorRef{p, {s[0], s[1], s[2], s[3]}, ik::plan::chunked(p, sizes, s, sizeof(T))};
}
ik::OutRef oref(void* p, const int64_t* s) {
  return p ? ik::OutRef{p, {s[0], s[1], s[2], s[3]}} : ik::OutRef{nullptr, {0, 0, 0, 0}};
}

// shape: [cout, cin, k] per conv; bs: the biases' strides.
template <class T>
void set_convs(ik::ConvRef* conv, const void* const* w, const int64_t* ws, const void* const* b, const int64_t* bs,
               const int* shape) {
  for (int i = 0; i < ik::kNumConvs; ++i) {
    const int64_t* s = ws + 4 * i;
    const int64_t sizes[4] = {shape[3 * i], shape[3 * i + 1], shape[3 * i + 2], shape[3 * i + 2]};
    conv[i] = ik::ConvRef{w[i], {s[0], s[1], s[2], s[3]}, b[i], bs[i], shape[3 * i], shape[3 * i + 1],
                          shape[3 * i + 2], ik::plan::chunked(w[i], sizes, s, sizeof(T))};
  }
}

template <class T>
int forward(const void* x, const int64_t* xs, void* y, const int64_t* ys, void* r3, const int64_t* r3s, void* r5,
            const int64_t* r5s, const void* const* w, const int64_t* ws, const void* const* b, const int64_t* bs, const int* shape,
            int64_t n, int h, int wd, int relu, int two_launch, int64_t smem_limit, int* tiles_out) {
  ik::FwdParams p{};
  p.x = tref<T>(x, xs, n, shape[1], h, wd);
  p.y = oref(y, ys);
  p.r[0] = oref(r3, r3s);
  p.r[1] = oref(r5, r5s);
  set_convs<T>(p.conv, w, ws, b, bs, shape);
  p.n = n, p.h = h, p.w = wd, p.relu = relu != 0;
  int64_t smem = 0;
  if (!ik::plan::forward(p, sizeof(T), sizeof(ik::AccT<T>), smem_limit, kWgmma, &smem)) return 1;
#if defined(IK_EMU_DEVICE_CORE) && defined(IK_WGMMA)
  ik::plan::forward_tma(p, sizeof(T), kWgmma, ik::tma_encode);  // as ops.cpp, with the shim's maps
#endif
  tiles_out[0] = p.tiles.th, tiles_out[1] = p.tiles.tw;
  std::vector<char> shared(static_cast<size_t>(smem), kGarbage);
  // As ops.cpp: two launches go through reduce outputs, workspaces where they are not saved
  // (channels_last [n][h][w][c], NaN-filled: stage 2 must read only what stage 1 wrote).
  std::vector<T> work[2];
  for (int b = 0; b < 2 && two_launch; ++b)
    if (p.r[b].p == nullptr) {
      const int c = shape[3 * (b == 0 ? ik::kW3r : ik::kW5r)];
      work[b].assign(static_cast<size_t>(n) * h * wd * c, ik::Num<T>::from_acc(ik::AccT<T>(0) / ik::AccT<T>(0)));
      p.r[b] = ik::OutRef{work[b].data(), {int64_t{h} * wd * c, 1, int64_t{wd} * c, c}};
    }
  int stages[2];
  for (int i = 0, launches = ik::plan::forward_stages(two_launch != 0, stages); i < launches; ++i) {
    p.stage = stages[i];
    const int64_t jobs = tl::num_fwd_jobs(n, p.tiles, p.stage);
    for (int64_t j = 0; j < jobs; ++j)
      run_block<T>(shared, [&](const auto& core) { ik::run_fwd_job<T>(p, j, core, shared.data()); }, true);
  }
  return 0;
}

template <class T>
int backward(const void* gy, const int64_t* gys, const void* x, const int64_t* xs, const void* y, const int64_t* ys,
             const void* r3, const int64_t* r3s, const void* r5, const int64_t* r5s, const void* const* w,
             const int64_t* ws, const void* const* b, const int64_t* bs, const int* shape, int64_t n, int h, int wd, int relu,
             int need_dx, const int64_t* layout, const int64_t* rule, void* dx, const int64_t* dxs, void* grads,
             int64_t* launches_out) {
  ik::BwdParams p{};
  const int64_t ctot = shape[0] + shape[3 * ik::kW3] + shape[3 * ik::kW5] + shape[3 * ik::kWp];
  p.gy = tref<T>(gy, gys, n, ctot, h, wd), p.x = tref<T>(x, xs, n, shape[1], h, wd), p.y = tref<T>(y, ys, n, ctot, h, wd);
  p.r[0] = tref<T>(r3, r3s, n, shape[3 * ik::kW3r], h, wd), p.r[1] = tref<T>(r5, r5s, n, shape[3 * ik::kW5r], h, wd);
  set_convs<T>(p.conv, w, ws, b, bs, shape);
  p.n = n, p.h = h, p.w = wd, p.relu = relu != 0;
  // the layout and split rule as ops.cpp receives them from Python, with ops.cpp's guard
  if (!ik::plan::grad_layout_fits(p, layout)) return 1;
  ik::plan::backward(p, need_dx != 0, layout, tl::PixelSplitRule{rule[0], rule[1], rule[2]});
  const int64_t pixels = n * h * static_cast<int64_t>(wd);
  using Acc = ik::AccT<T>;
  // NaN-filled, so that an element no job writes shows up in the results.
  std::vector<T> gr(static_cast<size_t>(pixels) * ik::gr_cols(p), ik::Num<T>::from_acc(Acc(0) / Acc(0)));
  std::vector<Acc> partial(static_cast<size_t>(p.split.splits) * p.p_total, Acc(0) / Acc(0));
  std::vector<char> shared(static_cast<size_t>(tl::bwd_smem_bytes(sizeof(T), sizeof(Acc))), kGarbage);
  char* dx_ws = shared.data() + tl::bwd_dx_offset(sizeof(T), sizeof(Acc));
  p.gr = gr.data();
  p.dx = oref(dx, dxs);
  p.partial = partial.data();
  p.grads = grads;
#if defined(IK_EMU_DEVICE_CORE) && defined(IK_WGMMA)
  ik::plan::backward_tma(p, sizeof(T), kWgmma, ik::tma_encode);  // as ops.cpp, with the shim's maps
#endif
  int64_t launches = 0;
  const int64_t reduce_jobs = p.reduce_jobs[0] + p.reduce_jobs[1];
  if (reduce_jobs > 0) ++launches;
  for (int64_t j = 0; j < reduce_jobs; ++j)
    run_block<T>(shared, [&](const auto& core) { ik::run_reduce_grad_job<T>(p, j, core); });
  const int64_t grad_jobs = p.seg_end[tl::kNumSegments - 1];
  if (grad_jobs > 0) ++launches;
  for (int64_t j = 0; j < grad_jobs; ++j)
    run_block<T, true>(shared, [&](const auto& core) { ik::run_grads_job<T>(p, j, core, dx_ws); }, true);  // as the grads kernel
  if (p.p_total > 0) ++launches;
  for (int64_t i = 0; i < p.p_total; ++i) ik::sum_partials<T>(p, i);
  launches_out[0] = launches;
  launches_out[1] = p.split.splits;
  return 0;
}

}  // namespace

extern "C" {

// TMA box loads the wgmma build's device core has issued in this process (0 in other builds).
long ik_emu_tma_boxes() {
#if defined(IK_EMU_DEVICE_CORE)
  return cuda_shim::tma_boxes.load();
#else
  return 0;
#endif
}

// Returns 0 on success, 1 when no tile fits smem_limit, 2 for an unknown dtype.
int ik_emu_forward(int dtype, const void* x, const int64_t* xs, void* y, const int64_t* ys, void* r3,
                   const int64_t* r3s, void* r5, const int64_t* r5s, const void* const* w, const int64_t* ws,
                   const void* const* b, const int64_t* bs, const int* shape, int64_t n, int h, int wd, int relu, int two_launch,
                   int64_t smem_limit, int* tiles_out) {
  if (dtype == 1)
    return forward<EmuHalf>(x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, two_launch, smem_limit, tiles_out);
  if (dtype == 0)
    return forward<float>(x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, two_launch, smem_limit, tiles_out);
  if (dtype == 3)
    return forward<double>(x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, two_launch, smem_limit, tiles_out);
  return 2;
}

// Returns 0 on success, 1 when plan::grad_layout_fits refuses the layout (_layout.GradLayout.as_ints;
// rule: _layout.PixelSplitRule.as_ints), 2 for an unknown dtype. launches_out: [launches run, pixel splits].
int ik_emu_backward(int dtype, const void* gy, const int64_t* gys, const void* x, const int64_t* xs, const void* y,
                    const int64_t* ys, const void* r3, const int64_t* r3s, const void* r5, const int64_t* r5s,
                    const void* const* w, const int64_t* ws, const void* const* b, const int64_t* bs, const int* shape, int64_t n,
                    int h, int wd, int relu, int need_dx, const int64_t* layout, const int64_t* rule, void* dx,
                    const int64_t* dxs, void* grads, int64_t* launches_out) {
  if (dtype == 1)
    return backward<EmuHalf>(gy, gys, x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, need_dx,
                             layout, rule, dx, dxs, grads, launches_out);
  if (dtype == 0)
    return backward<float>(gy, gys, x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, need_dx, layout,
                           rule, dx, dxs, grads, launches_out);
  if (dtype == 3)
    return backward<double>(gy, gys, x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, need_dx,
                            layout, rule, dx, dxs, grads, launches_out);
  return 2;
}

// The backward plan of a module (shape: [cout, cin, k] per conv) for the layout and split rule
// the backward op passes: out_offsets[12] = grad_offset, out_strides[24] = grad_stride,
// out[0] = p_total, out[1] = pixel splits, out[2] = launch-2 jobs. Returns 1 when
// plan::grad_layout_fits refuses the layout.
int ik_plan_backward(const int* shape, int64_t n, int h, int wd, int need_dx, const int64_t* layout,
                     const int64_t* rule, int64_t* out_offsets, int64_t* out_strides, int64_t* out) {
  ik::BwdParams p{};
  for (int i = 0; i < ik::kNumConvs; ++i)
    p.conv[i] = ik::ConvRef{nullptr, {0, 0, 0, 0}, nullptr, 0, shape[3 * i], shape[3 * i + 1], shape[3 * i + 2], false};
  p.n = n, p.h = h, p.w = wd;
  if (!ik::plan::grad_layout_fits(p, layout)) return 1;
  ik::plan::backward(p, need_dx != 0, layout, tl::PixelSplitRule{rule[0], rule[1], rule[2]});
  for (int i = 0; i < 2 * ik::kNumConvs; ++i) out_offsets[i] = p.grad_offset[i];
  for (int i = 0; i < ik::kNumConvs; ++i)
    for (int d = 0; d < 4; ++d) out_strides[4 * i + d] = p.grad_stride[i][d];
  out[0] = p.p_total, out[1] = p.split.splits, out[2] = p.seg_end[tl::kNumSegments - 1];
  return 0;
}

}  // extern "C"
