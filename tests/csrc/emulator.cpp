// CPU emulator of the fused CUDA C++ kernels, for tests without a GPU
// (tests/test_cuda_emulator.py compiles it with the host compiler; no CUDA toolkit needed).
//
// It runs the kernels' own job functions (csrc/inception_algo.h: tile/halo index math,
// operand loaders, epilogues, planning of grids and the gradient layout) for every job of
// every launch, in one of two builds:
//   - default: a plain-loop Core computes each GEMM tile;
//   - IK_EMU_DEVICE_CORE: the device's own DeviceCore (csrc/inception_core.cuh) runs each
//     block on 128 std::threads with a std::barrier for __syncthreads and a reference WMMA
//     (cuda_shim.h) -- staging, fragment offsets, SIMT micro-tiles and barriers included.
// What neither can check: real hardware (WMMA lane layouts, fp16/bf16 rounding, timing).
//
// Entry points (extern "C", for ctypes). dtype: 0 float32 (SIMT path), 3 float64 (SIMT),
// 1 "tensor-core float": float32 data through the WMMA path (Num<EmuHalf>::kTensorCore).

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

// The tensor-core path's element type in the emulator: a float in a struct, so that the
// arithmetic stays exact fp32 while the code takes the WMMA branch.
struct EmuHalf {
  float v;
};
inline float to_float(EmuHalf h) { return h.v; }

#if defined(IK_EMU_DEVICE_CORE)
#include "cuda_shim.h"
#endif

#include "../../csrc/inception_algo.h"

namespace inception_kernels {
template <>
struct Num<EmuHalf> {
  using Acc = float;
  static constexpr bool kTensorCore = true;
  static float to_acc(EmuHalf v) { return v.v; }
  static EmuHalf from_acc(float v) { return EmuHalf{v}; }
};
}  // namespace inception_kernels

#if defined(IK_EMU_DEVICE_CORE)
#include "../../csrc/inception_core.cuh"
#endif

namespace ik = inception_kernels;
namespace tl = inception_kernels::tiling;

namespace {

// Shared memory starts as all-ones bytes (NaN in every float type): a job that read shared
// memory it did not write would turn its results to NaN.
constexpr char kGarbage = static_cast<char>(0xFF);

// The plain-loop Core: C[m, n] = sum_k a(m, k) * b(k, n) over the whole kBM x kBN tile.
struct EmuCore {
  template <class A, class B, class E>
  void gemm(const A& a, const B& b, int kdim, const E& epi) const {
    using T = decltype(a(0, 0));
    using Acc = ik::AccT<T>;
    std::vector<T> bt(static_cast<size_t>(kdim) * tl::kBN);
    for (int k = 0; k < kdim; ++k)
      for (int n = 0; n < tl::kBN; ++n) bt[static_cast<size_t>(k) * tl::kBN + n] = b(k, n);
    std::vector<T> arow(kdim);
    for (int m = 0; m < tl::kBM; ++m) {
      for (int k = 0; k < kdim; ++k) arow[k] = a(m, k);
      for (int n = 0; n < tl::kBN; ++n) {
        Acc acc = 0;
        for (int k = 0; k < kdim; ++k)
          acc += ik::Num<T>::to_acc(arow[k]) * ik::Num<T>::to_acc(bt[static_cast<size_t>(k) * tl::kBN + n]);
        epi(m, n, acc);
      }
    }
  }
};

// Runs one thread block: body(core) with the block's shared memory. Loop build: once, with EmuCore. Device-core
// build: on 128 threads, each with its threadIdx, with the device's DeviceCore.
template <class T, class Body>
void run_block(std::vector<char>& smem, const Body& body) {
#if defined(IK_EMU_DEVICE_CORE)
  std::barrier<> barrier(tl::kThreads);
  cuda_shim::block_barrier = &barrier;
  cuda_shim::smem_base = smem.data();
  std::vector<std::thread> threads;
  for (unsigned tid = 0; tid < static_cast<unsigned>(tl::kThreads); ++tid)
    threads.emplace_back([&, tid] {
      cuda_shim::thread_idx = Dim3{tid, 0, 0};
      body(ik::DeviceCore<T>{smem.data()});
    });
  for (auto& t : threads) t.join();
#else
  (void)smem;  // EmuCore keeps its operands in host vectors
  body(EmuCore{});
#endif
}

ik::TensorRef tref(const void* p, const int64_t* s) { return ik::TensorRef{p, {s[0], s[1], s[2], s[3]}}; }
ik::OutRef oref(void* p, const int64_t* s) {
  return p ? ik::OutRef{p, {s[0], s[1], s[2], s[3]}} : ik::OutRef{nullptr, {0, 0, 0, 0}};
}

// shape: [cout, cin, k] per conv; bs: the biases' strides.
void set_convs(ik::ConvRef* conv, const void* const* w, const int64_t* ws, const void* const* b, const int64_t* bs,
               const int* shape) {
  for (int i = 0; i < ik::kNumConvs; ++i) {
    const int64_t* s = ws + 4 * i;
    conv[i] = ik::ConvRef{w[i], {s[0], s[1], s[2], s[3]}, b[i], bs[i], shape[3 * i], shape[3 * i + 1], shape[3 * i + 2]};
  }
}

template <class T>
int forward(const void* x, const int64_t* xs, void* y, const int64_t* ys, void* r3, const int64_t* r3s, void* r5,
            const int64_t* r5s, const void* const* w, const int64_t* ws, const void* const* b, const int64_t* bs, const int* shape,
            int64_t n, int h, int wd, int relu, int64_t smem_limit, int* tiles_out) {
  ik::FwdParams p{};
  p.x = tref(x, xs);
  p.y = oref(y, ys);
  p.r[0] = oref(r3, r3s);
  p.r[1] = oref(r5, r5s);
  set_convs(p.conv, w, ws, b, bs, shape);
  p.n = n, p.h = h, p.w = wd, p.relu = relu != 0;
  int64_t smem = 0;
  if (!ik::plan::forward(p, sizeof(T), sizeof(ik::AccT<T>), smem_limit, &smem)) return 1;
  tiles_out[0] = p.tiles.th, tiles_out[1] = p.tiles.tw;
  std::vector<char> shared(static_cast<size_t>(smem), kGarbage);
  const int64_t jobs = tl::num_fwd_jobs(n, p.tiles);
  for (int64_t j = 0; j < jobs; ++j)
    run_block<T>(shared, [&](const auto& core) { ik::run_fwd_job<T>(p, j, core, shared.data()); });
  return 0;
}

template <class T>
int backward(const void* gy, const int64_t* gys, const void* x, const int64_t* xs, const void* y, const int64_t* ys,
             const void* r3, const int64_t* r3s, const void* r5, const int64_t* r5s, const void* const* w,
             const int64_t* ws, const void* const* b, const int64_t* bs, const int* shape, int64_t n, int h, int wd, int relu,
             const int* needs_in, const int* weight_cl_in, void* dx, const int64_t* dxs, void* grads,
             int64_t grads_numel, int64_t* launches_out) {
  ik::BwdParams p{};
  p.gy = tref(gy, gys), p.x = tref(x, xs), p.y = tref(y, ys);
  p.r[0] = tref(r3, r3s), p.r[1] = tref(r5, r5s);
  set_convs(p.conv, w, ws, b, bs, shape);
  p.n = n, p.h = h, p.w = wd, p.relu = relu != 0;
  bool needs[13], has_bias[6], weight_cl[6];
  for (int i = 0; i < 13; ++i) needs[i] = needs_in[i] != 0;
  for (int i = 0; i < 6; ++i) has_bias[i] = b[i] != nullptr, weight_cl[i] = weight_cl_in[i] != 0;
  ik::plan::backward(p, needs, has_bias, weight_cl);
  if (p.p_total != grads_numel) return 1;  // the layout disagrees with ops._grad_layout
  const int64_t pixels = n * h * static_cast<int64_t>(wd);
  using Acc = ik::AccT<T>;
  // NaN-filled, so that an element no job writes shows up in the results.
  std::vector<T> gr(static_cast<size_t>(pixels) * ik::gr_cols(p), ik::Num<T>::from_acc(Acc(0) / Acc(0)));
  std::vector<Acc> partial(static_cast<size_t>(p.split.splits) * p.p_total, Acc(0) / Acc(0));
  std::vector<char> shared(static_cast<size_t>(tl::bwd_smem_bytes(sizeof(T), sizeof(Acc))), kGarbage);
  Acc* dacc = reinterpret_cast<Acc*>(shared.data() + tl::staging_bytes(sizeof(T), sizeof(Acc)));
  p.gr = gr.data();
  p.dx = oref(dx, dxs);
  p.partial = partial.data();
  p.grads = grads;
  int64_t launches = 0;
  const int64_t reduce_jobs = p.reduce_jobs[0] + p.reduce_jobs[1];
  if (reduce_jobs > 0) ++launches;
  for (int64_t j = 0; j < reduce_jobs; ++j)
    run_block<T>(shared, [&](const auto& core) { ik::run_reduce_grad_job<T>(p, j, core); });
  const int64_t grad_jobs = p.seg_end[tl::kNumSegments - 1];
  if (grad_jobs > 0) ++launches;
  for (int64_t j = 0; j < grad_jobs; ++j)
    run_block<T>(shared, [&](const auto& core) { ik::run_grads_job<T>(p, j, core, dacc); });
  if (p.p_total > 0) ++launches;
  for (int64_t i = 0; i < p.p_total; ++i) ik::sum_partials<T>(p, i);
  launches_out[0] = launches;
  launches_out[1] = p.split.splits;
  return 0;
}

}  // namespace

extern "C" {

// Returns 0 on success, 1 when no tile fits smem_limit, 2 for an unknown dtype.
int ik_emu_forward(int dtype, const void* x, const int64_t* xs, void* y, const int64_t* ys, void* r3,
                   const int64_t* r3s, void* r5, const int64_t* r5s, const void* const* w, const int64_t* ws,
                   const void* const* b, const int64_t* bs, const int* shape, int64_t n, int h, int wd, int relu, int64_t smem_limit,
                   int* tiles_out) {
  if (dtype == 1)
    return forward<EmuHalf>(x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, smem_limit, tiles_out);
  if (dtype == 0)
    return forward<float>(x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, smem_limit, tiles_out);
  if (dtype == 3)
    return forward<double>(x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, smem_limit, tiles_out);
  return 2;
}

// Returns 0 on success, 1 when the planned gradient layout's size is not grads_numel,
// 2 for an unknown dtype. launches_out: [launches run, pixel splits].
int ik_emu_backward(int dtype, const void* gy, const int64_t* gys, const void* x, const int64_t* xs, const void* y,
                    const int64_t* ys, const void* r3, const int64_t* r3s, const void* r5, const int64_t* r5s,
                    const void* const* w, const int64_t* ws, const void* const* b, const int64_t* bs, const int* shape, int64_t n,
                    int h, int wd, int relu, const int* needs, const int* weight_cl, void* dx, const int64_t* dxs,
                    void* grads, int64_t grads_numel, int64_t* launches_out) {
  if (dtype == 1)
    return backward<EmuHalf>(gy, gys, x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, needs,
                             weight_cl, dx, dxs, grads, grads_numel, launches_out);
  if (dtype == 0)
    return backward<float>(gy, gys, x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, needs, weight_cl,
                           dx, dxs, grads, grads_numel, launches_out);
  if (dtype == 3)
    return backward<double>(gy, gys, x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, bs, shape, n, h, wd, relu, needs,
                            weight_cl, dx, dxs, grads, grads_numel, launches_out);
  return 2;
}

}  // extern "C"
