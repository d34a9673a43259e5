// CPU emulator of the fused CUDA C++ kernels (csrc/inception_algo.h), for tests without a GPU.
//
// Compiled by tests/test_cuda_index_math.py with the host compiler (g++), no CUDA toolkit
// needed. It runs the kernels' own job functions -- tile/halo index math, operand loaders,
// epilogues, planning of grids and the gradient layout -- for every job of every launch, with
// a plain-loop Core in place of the device GEMM (WMMA or SIMT over shared memory). What the
// emulator cannot check: the device Core itself (staging, fragments, barriers), which only a
// GPU run tests (the `gpu`-marked suites against backend "cuda").
//
// Entry points (extern "C", for ctypes): float32 (dtype 0) and float64 (dtype 3).

#include <cstdint>
#include <cstring>
#include <vector>

#include "../../csrc/inception_algo.h"

namespace ik = inception_kernels;
namespace tl = inception_kernels::tiling;

namespace {

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
        for (int k = 0; k < kdim; ++k) acc += ik::Num<T>::to_acc(arow[k]) * ik::Num<T>::to_acc(bt[static_cast<size_t>(k) * tl::kBN + n]);
        epi(m, n, acc);
      }
    }
  }
};

ik::TensorRef tref(const void* p, const int64_t* s) { return ik::TensorRef{p, {s[0], s[1], s[2], s[3]}}; }
ik::OutRef oref(void* p, const int64_t* s) {
  return p ? ik::OutRef{p, {s[0], s[1], s[2], s[3]}} : ik::OutRef{nullptr, {0, 0, 0, 0}};
}

void set_convs(ik::ConvRef* conv, const void* const* w, const int64_t* ws, const void* const* b, const int* shape) {
  for (int i = 0; i < ik::kNumConvs; ++i) {
    const int64_t* s = ws + 4 * i;
    conv[i] = ik::ConvRef{w[i], {s[0], s[1], s[2], s[3]}, b[i], shape[3 * i], shape[3 * i + 1], shape[3 * i + 2]};
  }
}

template <class T>
int forward(const void* x, const int64_t* xs, void* y, const int64_t* ys, void* r3, const int64_t* r3s, void* r5,
            const int64_t* r5s, const void* const* w, const int64_t* ws, const void* const* b, const int* shape,
            int64_t n, int h, int wd, int relu, int64_t smem_limit, int* tiles_out) {
  ik::FwdParams p{};
  p.x = tref(x, xs);
  p.y = oref(y, ys);
  p.r[0] = oref(r3, r3s);
  p.r[1] = oref(r5, r5s);
  set_convs(p.conv, w, ws, b, shape);
  p.n = n, p.h = h, p.w = wd, p.relu = relu != 0;
  int64_t smem = 0;
  if (!ik::plan::forward(p, sizeof(T), sizeof(ik::AccT<T>), smem_limit, &smem)) return 1;
  tiles_out[0] = p.tiles.th, tiles_out[1] = p.tiles.tw;
  std::vector<char> shared(static_cast<size_t>(smem));
  const EmuCore core;
  const int64_t jobs = tl::num_fwd_jobs(n, p.tiles);
  for (int64_t j = 0; j < jobs; ++j) ik::run_fwd_job<T>(p, j, core, shared.data());
  return 0;
}

template <class T>
int backward(const void* gy, const int64_t* gys, const void* x, const int64_t* xs, const void* y, const int64_t* ys,
             const void* r3, const int64_t* r3s, const void* r5, const int64_t* r5s, const void* const* w,
             const int64_t* ws, const void* const* b, const int* shape, int64_t n, int h, int wd, int relu,
             const int* needs_in, const int* weight_cl_in, void* dx, const int64_t* dxs, void* grads,
             int64_t grads_numel, int64_t* launches_out) {
  ik::BwdParams p{};
  p.gy = tref(gy, gys), p.x = tref(x, xs), p.y = tref(y, ys);
  p.r[0] = tref(r3, r3s), p.r[1] = tref(r5, r5s);
  set_convs(p.conv, w, ws, b, shape);
  p.n = n, p.h = h, p.w = wd, p.relu = relu != 0;
  bool needs[13], has_bias[6], weight_cl[6];
  for (int i = 0; i < 13; ++i) needs[i] = needs_in[i] != 0;
  for (int i = 0; i < 6; ++i) has_bias[i] = b[i] != nullptr, weight_cl[i] = weight_cl_in[i] != 0;
  ik::plan::backward(p, needs, has_bias, weight_cl);
  if (p.p_total != grads_numel) return 1;  // the layout disagrees with ops._grad_layout
  const int64_t pixels = n * h * static_cast<int64_t>(wd);
  using Acc = ik::AccT<T>;
  // NaN-filled, so that an element no job writes shows up in the results.
  std::vector<T> gr(static_cast<size_t>(pixels) * ik::gr_cols(p), T(0) / T(0));
  std::vector<Acc> partial(static_cast<size_t>(p.split.splits) * p.p_total, Acc(0) / Acc(0));
  std::vector<Acc> dacc(tl::kBM * tl::kBN);
  p.gr = gr.data();
  p.dx = oref(dx, dxs);
  p.partial = partial.data();
  p.grads = grads;
  const EmuCore core;
  int64_t launches = 0;
  const int64_t reduce_jobs = p.reduce_jobs[0] + p.reduce_jobs[1];
  if (reduce_jobs > 0) ++launches;
  for (int64_t j = 0; j < reduce_jobs; ++j) ik::run_reduce_grad_job<T>(p, j, core);
  const int64_t grad_jobs = p.seg_end[tl::kNumSegments - 1];
  if (grad_jobs > 0) ++launches;
  for (int64_t j = 0; j < grad_jobs; ++j) ik::run_grads_job<T>(p, j, core, dacc.data());
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
                   const void* const* b, const int* shape, int64_t n, int h, int wd, int relu, int64_t smem_limit,
                   int* tiles_out) {
  if (dtype == 0)
    return forward<float>(x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, shape, n, h, wd, relu, smem_limit, tiles_out);
  if (dtype == 3)
    return forward<double>(x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, shape, n, h, wd, relu, smem_limit, tiles_out);
  return 2;
}

// Returns 0 on success, 1 when the planned gradient layout's size is not grads_numel,
// 2 for an unknown dtype. launches_out: [launches run, pixel splits].
int ik_emu_backward(int dtype, const void* gy, const int64_t* gys, const void* x, const int64_t* xs, const void* y,
                    const int64_t* ys, const void* r3, const int64_t* r3s, const void* r5, const int64_t* r5s,
                    const void* const* w, const int64_t* ws, const void* const* b, const int* shape, int64_t n,
                    int h, int wd, int relu, const int* needs, const int* weight_cl, void* dx, const int64_t* dxs,
                    void* grads, int64_t grads_numel, int64_t* launches_out) {
  if (dtype == 0)
    return backward<float>(gy, gys, x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, shape, n, h, wd, relu, needs, weight_cl,
                           dx, dxs, grads, grads_numel, launches_out);
  if (dtype == 3)
    return backward<double>(gy, gys, x, xs, y, ys, r3, r3s, r5, r5s, w, ws, b, shape, n, h, wd, relu, needs,
                            weight_cl, dx, dxs, grads, grads_numel, launches_out);
  return 2;
}

}  // extern "C"
