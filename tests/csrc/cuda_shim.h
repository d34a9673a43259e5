// Just enough of CUDA for g++ to compile csrc/inception_core.cuh on the CPU (the emulator's
// device-core mode): a block is 128 std::threads that share one std::barrier, threadIdx is
// thread-local, and nvcuda::wmma is a reference implementation of the fragment API that also
// checks its alignment rules (for 16-bit element types: pointers 32-byte aligned relative to
// shared memory, ldm a multiple of 8 elements; float accumulators: ldm a multiple of 4).
#pragma once

#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#define __device__
#define __host__
#define __forceinline__ inline

struct Dim3 {
  unsigned x, y, z;
};

namespace cuda_shim {
inline thread_local Dim3 thread_idx{0, 0, 0};
inline std::barrier<>* block_barrier = nullptr;  // the running block's (one block at a time)
inline const char* smem_base = nullptr;          // the running block's shared memory

[[noreturn]] inline void fail(const char* what, long value) {
  std::fprintf(stderr, "cuda_shim: %s (%ld)\n", what, value);
  std::abort();
}
}  // namespace cuda_shim

#define threadIdx (cuda_shim::thread_idx)

inline void __syncthreads() { cuda_shim::block_barrier->arrive_and_wait(); }

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

// Every thread of the warp holds the whole fragment (the hardware spreads it over the lanes).
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int kRows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int kCols = std::is_same_v<Use, matrix_a> ? K : N;
  float x[kRows * kCols];
};

template <class Use, int M, int N, int K, class T, class L>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
  for (float& e : f.x) e = v;
}

template <class T>
void check_pointer(const T* p, unsigned ldm, unsigned ldm_multiple) {
  const long off = reinterpret_cast<const char*>(p) - cuda_shim::smem_base;
  // The element offset must be what 32-byte alignment means for the real 16-bit / 32-bit type.
  const long elems = off / static_cast<long>(sizeof(T));
  const long align_elems = ldm_multiple == 8 ? 16 : 8;
  if (off % static_cast<long>(sizeof(T)) != 0 || elems % align_elems != 0)
    cuda_shim::fail("wmma pointer not 256-bit aligned (element offset)", elems);
  if (ldm % ldm_multiple != 0) cuda_shim::fail("wmma ldm not a multiple of the required size", ldm);
}

// The emulator's tensor-core element type stores a float (see emulator.cpp); the real code
// loads __half / __nv_bfloat16.
template <class Use, int M, int N, int K, class T>
void load_matrix_sync(fragment<Use, M, N, K, T, row_major>& f, const T* p, unsigned ldm) {
  check_pointer(p, ldm, 8);
  using F = fragment<Use, M, N, K, T, row_major>;
  for (int r = 0; r < F::kRows; ++r)
    for (int c = 0; c < F::kCols; ++c) f.x[r * F::kCols + c] = to_float(p[r * ldm + c]);
}

template <int M, int N, int K, class TA, class TB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, TA, row_major>& a,
              const fragment<matrix_b, M, N, K, TB, row_major>& b, const fragment<accumulator, M, N, K, float>& c) {
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; ++k) s += a.x[i * K + k] * b.x[k * N + j];
      out[i * N + j] = s;
    }
  for (int i = 0; i < M * N; ++i) d.x[i] = out[i];
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
  check_pointer(p, ldm, 4);
  if (layout != mem_row_major) cuda_shim::fail("only mem_row_major is emulated", layout);
  if (threadIdx.x % 32 != 0) return;  // one lane writes (every lane holds the same values)
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) p[r * ldm + c] = f.x[r * N + c];
}

}  // namespace wmma
}  // namespace nvcuda
