// Just enough of CUDA for g++ to compile csrc/inception_core.cuh on the CPU (the emulator's
// device-core mode): a block is 128 std::threads that share one std::barrier (each warp of 32
// another), threadIdx is thread-local, and the PTX instructions of csrc/inception_ptx.cuh are
// CPU functions written from the PTX ISA's documented semantics:
//   - cp.async: each copy is queued in the issuing thread's open group and performed (with its
//     zero fill) only when cp.async.wait_group lets that group complete -- so reading a stage
//     before waiting for it reads stale data, as on the GPU;
//   - ldmatrix (.x4, .trans) and mma.sync m16n8k16: warp-collective, through a per-warp
//     exchange of the lanes' addresses and fragments, with the documented lane layouts;
//   - wgmma.mma_async m64nNk16 (N = 64, 128): both operands read through their matrix
//     descriptors (start address, LBO, SBO, 128-byte swizzle, K- or MN-major canonical layout) when
//     wgmma.wait_group retires the group -- so a stage refilled before the wait reads wrong;
//     the accumulator fragment is the documented warpgroup layout;
//   - TMA (cp.async.bulk.tensor.4d with the 128-byte swizzle and zero fill outside the tensor)
//     and mbarriers (init, arrive.expect_tx, try_wait.parity): a box load is queued on its
//     barrier and lands when a thread's wait completes the barrier's phase -- which needs the
//     announced arrival and exactly the announced transaction bytes; a box read before the
//     wait reads stale data. The tensor map is the emulator's own encoding of the TmaSpec
//     (tma_encode, with the driver's alignment and size rules).
// Alignment rules are checked (16-byte cp.async / ldmatrix rows / shared stores, descriptor
// swizzle mode), and a violation aborts the test process with a message.
#pragma once

#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <type_traits>
#include <vector>

#define __device__
#define __host__
#define __forceinline__ inline

struct Dim3 {
  unsigned x, y, z;
};

namespace cuda_shim {
constexpr int kWarps = 4;
inline thread_local Dim3 thread_idx{0, 0, 0};
inline std::barrier<>* block_barrier = nullptr;           // the running block's (one block at a time)
inline std::barrier<>* warp_barrier[kWarps] = {};          // one per warp of the running block
inline const char* smem_base = nullptr;                    // the running block's shared memory

[[noreturn]] inline void fail(const char* what, long value) {
  std::fprintf(stderr, "cuda_shim: %s (%ld)\n", what, value);
  std::abort();
}

inline long smem_offset(const void* p) { return static_cast<const char*>(p) - smem_base; }

inline void check_align16(const void* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail(what, static_cast<long>(reinterpret_cast<uintptr_t>(p) % 16));
}

// Per-warp exchange buffers of the warp-collective instructions.
struct WarpExchange {
  const char* addr[32];
  uint32_t a[32][4];
  uint32_t b[32][2];
};
inline WarpExchange exchange[kWarps];

inline int warp_id() { return static_cast<int>(thread_idx.x) / 32; }
inline int lane_id() { return static_cast<int>(thread_idx.x) % 32; }
inline void warp_sync() { warp_barrier[warp_id()]->arrive_and_wait(); }

// cp.async groups of the calling thread.
struct Copy {
  char* dst;
  const char* src;
  int bytes;
};
inline thread_local std::vector<Copy> open_group;
inline thread_local std::deque<std::vector<Copy>> committed;

// Pending wgmma operations of the calling thread (retired by wgmma.wait_group).
struct Wgmma {
  float* d;
  uint64_t da, db;
  int n, scale_d, tnsp_a, tnsp_b;  // n: the instruction's N (operands are the emulator's fp16)
};
inline thread_local std::vector<Wgmma> wgmma_open;
inline thread_local std::deque<std::vector<Wgmma>> wgmma_committed;

// mbarriers of the running block, by address: a phase completes when `count` arrivals were
// made and the transaction bytes they announced equal the bytes of the queued box loads.
struct BoxLoad {
  char* dst;
  const void* map;
  int c[4];
};
struct MBarrier {
  int count = 0, arrived = 0;
  long expect = 0, queued = 0;
  unsigned phase = 0;  // phases completed
  std::vector<BoxLoad> loads;
};
inline std::mutex mbar_mutex;
inline std::condition_variable mbar_cv;
inline std::map<const void*, MBarrier> mbars;
inline std::atomic<long> tma_boxes{0};  // box loads issued (tests check the TMA path ran)
}  // namespace cuda_shim

#define threadIdx (cuda_shim::thread_idx)

inline void __syncthreads() { cuda_shim::block_barrier->arrive_and_wait(); }

namespace inception_kernels {
namespace ptx {

// 16-bit element bits -> float for the emulator's tensor-core type (IEEE binary16).
inline float half_bits_to_float(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<float>(h);
}

inline uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(cuda_shim::smem_offset(p)); }

inline void cp_async16(void* smem, const void* gmem, int src_bytes) {
  cuda_shim::check_align16(smem, "cp.async: shared address not 16-byte aligned");
  if (src_bytes > 0) cuda_shim::check_align16(gmem, "cp.async: global address not 16-byte aligned");
  if (src_bytes < 0 || src_bytes > 16) cuda_shim::fail("cp.async: src-size out of 0..16", src_bytes);
  cuda_shim::open_group.push_back({static_cast<char*>(smem), static_cast<const char*>(gmem), src_bytes});
}

inline void cp_async_commit() {
  cuda_shim::committed.push_back(std::move(cuda_shim::open_group));
  cuda_shim::open_group.clear();
}

template <int N>
inline void cp_async_wait() {
  while (cuda_shim::committed.size() > static_cast<size_t>(N)) {
    for (const cuda_shim::Copy& c : cuda_shim::committed.front()) {
      if (c.bytes > 0) std::memcpy(c.dst, c.src, static_cast<size_t>(c.bytes));
      std::memset(c.dst + c.bytes, 0, static_cast<size_t>(16 - c.bytes));
    }
    cuda_shim::committed.pop_front();
  }
}

inline void st_shared16(void* smem, const void* v) {
  cuda_shim::check_align16(smem, "st.shared.v4: address not 16-byte aligned");
  std::memcpy(smem, v, 16);
}

// ldmatrix .x4: lane l addresses row l % 8 of matrix l / 8.
inline void ldmatrix(uint32_t (&r)[4], const void* smem, bool trans) {
  using namespace cuda_shim;
  check_align16(smem, "ldmatrix: row address not 16-byte aligned");
  WarpExchange& x = exchange[warp_id()];
  const int t = lane_id();
  x.addr[t] = static_cast<const char*>(smem);
  warp_sync();
  for (int i = 0; i < 4; ++i) {
    uint16_t e[2];
    for (int j = 0; j < 2; ++j) {
      // non-trans: (row t / 4, column 2 (t % 4) + j); trans: (row 2 (t % 4) + j, column t / 4)
      const char* row = trans ? x.addr[8 * i + 2 * (t % 4) + j] : x.addr[8 * i + t / 4];
      const int col = trans ? t / 4 : 2 * (t % 4) + j;
      std::memcpy(&e[j], row + 2 * col, 2);
    }
    r[i] = static_cast<uint32_t>(e[0]) | (static_cast<uint32_t>(e[1]) << 16);
  }
  warp_sync();
}

inline void ldmatrix_x4(uint32_t (&r)[4], const void* smem) { ldmatrix(r, smem, false); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) { ldmatrix(r, smem, true); }

inline float lo(uint32_t v) { return half_bits_to_float(static_cast<uint16_t>(v & 0xFFFFu)); }
inline float hi(uint32_t v) { return half_bits_to_float(static_cast<uint16_t>(v >> 16)); }

// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 with the documented fragment layouts.
template <class T>
inline void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  static_assert(sizeof(T) == 2, "16-bit operands");
  using namespace cuda_shim;
  WarpExchange& x = exchange[warp_id()];
  const int t = lane_id();
  for (int i = 0; i < 4; ++i) x.a[t][i] = a[i];
  x.b[t][0] = b[0], x.b[t][1] = b[1];
  warp_sync();
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, q = l % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i % 2), col = 2 * q + 8 * (i / 2);
      A[row][col] = lo(x.a[l][i]);
      A[row][col + 1] = hi(x.a[l][i]);
    }
    for (int i = 0; i < 2; ++i) {
      B[2 * q + 8 * i][g] = lo(x.b[l][i]);
      B[2 * q + 8 * i + 1][g] = hi(x.b[l][i]);
    }
  }
  warp_sync();
  const int g = t / 4, q = t % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + 8 * (e / 2), col = 2 * q + e % 2;
    float s = 0.0f;
    for (int k = 0; k < 16; ++k) s += A[row][k] * B[k][col];
    d[e] += s;
  }
}

#if defined(IK_WGMMA)
inline void fence_proxy_async() {}
inline void wgmma_fence() {}

template <class T, int N, int TnspA, int TnspB>
inline void wgmma_m64nNk16(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  static_assert(sizeof(T) == 2, "16-bit operands");
  static_assert(N == 64 || N == 128, "wgmma m64nNk16: N is 64 or 128 here");
  cuda_shim::wgmma_open.push_back({d, desc_a, desc_b, N, scale_d, TnspA, TnspB});
}

inline void wgmma_commit() {
  cuda_shim::wgmma_committed.push_back(std::move(cuda_shim::wgmma_open));
  cuda_shim::wgmma_open.clear();
}

// Element (row, k) of a 16-deep operand of 64 rows through its descriptor: the canonical
// 128-byte-swizzle layouts of the PTX ISA (T = 8 16-bit elements per 16 bytes):
//   K-major  ((8,m),(T,2k)):((8T,SBO),(1,T))     row r at (r % 8) * 128 B + (r / 8) * SBO, k at 2 k B;
//   MN-major ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)) row r at 2 (r % 64) B + (r / 64) * LBO,
//                                                 k at (k % 8) * 128 B + (k / 8) * SBO;
// then Swizzle<3,4,3> on the byte address: bits 4-6 ^= bits 7-9.
inline float descriptor_element(uint64_t desc, bool mn_major, int row, int k) {
  const uint32_t start = static_cast<uint32_t>(desc & 0x3FFF) << 4;
  const uint32_t lbo = static_cast<uint32_t>((desc >> 16) & 0x3FFF) << 4;
  const uint32_t sbo = static_cast<uint32_t>((desc >> 32) & 0x3FFF) << 4;
  if ((desc >> 62) != 1) cuda_shim::fail("wgmma descriptor: only the 128-byte swizzle is emulated", static_cast<long>(desc >> 62));
  if (((desc >> 49) & 7) != 0) cuda_shim::fail("wgmma descriptor: base offset must be 0", static_cast<long>((desc >> 49) & 7));
  uint32_t a = mn_major ? start + 2 * (row % 64) + (row / 64) * lbo + (k % 8) * 128 + (k / 8) * sbo
                        : start + (row % 8) * 128 + (row / 8) * sbo + 2 * k;
  a ^= ((a >> 7) & 7) << 4;
  uint16_t bits;
  std::memcpy(&bits, cuda_shim::smem_base + a, 2);
  return half_bits_to_float(bits);
}

template <int N>
inline void wgmma_wait() {
  using namespace cuda_shim;
  const int w = warp_id(), t = lane_id();
  while (wgmma_committed.size() > static_cast<size_t>(N)) {
    for (const Wgmma& op : wgmma_committed.front()) {
      // Accumulator fragment of m64nNk16: warp w holds rows 16 w .. 16 w + 15; d[4 j + e] is
      // D[16 w + t / 4 + 8 (e / 2)][8 j + 2 (t % 4) + e % 2], j < N / 8.
      for (int j = 0; j < op.n / 8; ++j)
        for (int e = 0; e < 4; ++e) {
          const int m = 16 * w + t / 4 + 8 * (e / 2), n = 8 * j + 2 * (t % 4) + e % 2;
          float s = 0.0f;
          for (int k = 0; k < 16; ++k)
            s += descriptor_element(op.da, op.tnsp_a != 0, m, k) * descriptor_element(op.db, op.tnsp_b != 0, n, k);
          op.d[4 * j + e] = (op.scale_d ? op.d[4 * j + e] : 0.0f) + s;
        }
    }
    wgmma_committed.pop_front();
  }
}
#endif  // IK_WGMMA

}  // namespace ptx
}  // namespace inception_kernels
