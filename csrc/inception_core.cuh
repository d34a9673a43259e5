// DeviceCore: how a thread block computes one GEMM tile of a job (see inception_algo.h) on
// the GPU. Included by the kernel files (inception_launch.cuh), and by tests/csrc/emulator.cpp, which compiles
// this very code on the CPU with 128 std::threads per block and CPU versions of the PTX
// instructions (tests/csrc/cuda_shim.h and tma_shim.h, from the PTX ISA's documented fragment
// layouts, swizzle, matrix descriptors, TMA boxes and mbarriers): that is how the pipeline, the
// swizzled tiles, the fragment addressing and the barriers are tested without a GPU.
//
// C[kBM x bn] = A[kBM x kdim] B[kdim x bn] on 128 threads (one warpgroup, 4 warps), bn = 16,
// 32, 64 or 128 (tiling::n_tile_width: the N tiles are sized to the channels):
//
// fp16 / bf16 (tensor cores):
//   - a ring of kStages stages, tiling::tc_slot_bytes(bn) apart (16 KiB for bn <= 64, else
//     24 KiB); each stage is a swizzled A tile (64 rows) and B tile (bn columns), kTcBK deep (tiling::swizzle128: 128-byte lines, chunk c of line l at slot
//     c ^ (l % 8)). A line is a row for K-major operands and a k for MN-major ones, whose lines
//     of 128 columns span two swizzle atoms (tiling::tc_chunk_offset). Each thread stages 4 A
//     chunks and bn / 16 B chunks per stage (consecutive threads take consecutive chunks of a
//     line: coalesced): chunks the loaders point at go global -> shared with 16-byte cp.async
//     (zero-filled past the operand), computed chunks with one 16-byte shared store. A
//     K-major loader's row part of a chunk's address (pixel, bounds, base pointer) is computed
//     once per GEMM for each of the thread's rows, its k part stepped per stage (ThreadRows);
//     kStages - 1 stages are in flight while one is multiplied (cp.async.wait_group kStages - 2);
//   - sm_80 (and any arch without IK_WGMMA): the whole tile in one pass over k, each warp
//     owning a 32 x bn / 2 quarter of C (64 accumulators at bn = 128) and reading its fragments
//     with ldmatrix (.trans for MN-major operands) into mma.sync m16n8k16 (HMMA.16816.F32): per
//     16-deep step, 2 A fragments each feed bn / 16 MMAs (8 at bn = 128), B's fragments read
//     two 8-column blocks at a time (one ldmatrix.x4) and used at once;
//   - sm_90a (IK_WGMMA): the warpgroup issues wgmma.mma_async m64nNk16, N = 128 for the wide
//     tiles (HGMMA.64x128x16.F32), else 64, with both operands read from the swizzled tiles
//     through matrix descriptors (128-byte swizzle; transposed for MN-major operands), 4 chained
//     per stage, running while the threads stage the next slot; an operand tile that is a box
//     of a tensor (the loader's tma(): plan::forward_tma / backward_tma made its map) comes by
//     TMA instead of chunks: thread 0 announces the stage's bytes on the stage's mbarrier and
//     issues the boxes, every thread waits for the barrier's phase (load_stage);
//   - the epilogue: the accumulators go to shared memory as a [64][bn + 8] fp32 tile (in the
//     staging area, conflict-free), from which each thread hands rows' 8-column chunks to
//     epilogue_chunk (inception_algo.h): one 16-byte store per 8 outputs where the layout allows.
// fp32 / fp64 (SIMT, exact fp32: no TF32, so fp32 results do not depend on torch's TF32
// switches): one stage of kSimtBK through plain shared tiles, a 4 x 8 micro-tile per thread,
// kSimtBN-wide passes (ShiftedB).
#pragma once

#if defined(__CUDACC__)
#include "inception_ptx.cuh"
#endif

#include "inception_algo.h"

namespace inception_kernels {

// Whether an operand offers TMA boxes (`TmaTile tma(int k0, int rows) const`, inception_algo.h).
template <class Op, class = void>
struct HasTma : std::false_type {};
template <class Op>
struct HasTma<Op, std::void_t<decltype(&Op::tma)>> : std::true_type {};

// kTwoWidths: every tensor-core product runs as one of two compile-time widths, 64 or 128
// (gemm_pass), so a narrow product's ring packs its stages 16 KiB apart (tiling::tc_slot_bytes).
// Always on sm_90a (the wgmma shape); on sm_80 where the kernel asks for it (the grads kernel:
// its dx jobs keep their workspace past the narrow ring, tiling::bwd_dx_offset) -- elsewhere
// one 128-wide instantiation, 24 KiB stages, keeps the sm_80 forward within 255 registers.
template <class T, bool kTwoWidths = false>
struct DeviceCore {
  char* smem;  // the block's dynamic shared memory (1024-byte aligned); staging area at offset 0
  // The TMA path (sm_90a, IK_WGMMA): one mbarrier per stage of the ring (null: no TMA, every
  // operand goes by chunks), initialised by init_tma; bit s of `phases` is the parity of the
  // next phase of stage s's barrier this thread waits for (every thread waits for each).
  uint64_t* bars = nullptr;
  mutable uint32_t phases = 0;

  // Initialise the stage barriers (every thread calls it once, before any gemm).
  __device__ void init_tma() const {
#if defined(IK_WGMMA)
    if (bars != nullptr && threadIdx.x == 0) {
      for (int s = 0; s < tiling::kStages; ++s) ptx::mbar_init(&bars[s], 1);
      ptx::fence_mbar_init();
    }
    __syncthreads();
#endif
  }

  // The TMA boxes of operand op's tile at k0 (map null where it has none, or off this build).
  template <class Op>
  __device__ __forceinline__ TmaTile tma_tile(const Op& op, int k0, int rows) const {
#if defined(IK_WGMMA)
    if constexpr (HasTma<Op>::value)
      if (bars != nullptr) return op.tma(k0, rows);
#endif
    (void)op, (void)k0, (void)rows;
    return no_tma();
  }

  // Whether stage s of a product has TMA boxes (the same answer in every thread: it depends on
  // the operands and s only), i.e. whether its barrier's phase is to be waited for.
  template <class A, class B>
  __device__ __forceinline__ bool stage_has_tma(const A& a, const B& b, int s, int bn) const {
    return tma_tile(a, s * tiling::kTcBK, tiling::kBM).map != nullptr || tma_tile(b, s * tiling::kTcBK, bn).map != nullptr;
  }

  // Stage `s` (k0 = s * kTcBK) of a product kN wide (gemm_tensor_core) into its ring slot:
  // operand tiles with TMA boxes by thread 0 (announcing their bytes on the slot's barrier
  // first), the others chunk by chunk.
  template <int kN, class A, class B, class Ra, class Rb>
  __device__ __forceinline__ void load_stage(const A& a, const B& b, Ra& ra, Rb& rb, int s, int kdim, int bn) const {
    using namespace tiling;
    char* slot = smem + (s % kStages) * tiling::tc_slot_bytes(kN);
    const int k0 = s * kTcBK;
    const TmaTile ta = tma_tile(a, k0, kBM), tb = tma_tile(b, k0, bn);
#if defined(IK_WGMMA)
    if ((ta.map != nullptr || tb.map != nullptr) && threadIdx.x == 0) {
      uint64_t* bar = &bars[s % kStages];
      ptx::mbar_arrive_expect_tx(bar, (ta.map ? ta.boxes * ta.box_bytes : 0) + (tb.map ? tb.boxes * tb.box_bytes : 0));
      if (ta.map != nullptr) issue_boxes(ta, slot, bar);
      if (tb.map != nullptr) issue_boxes(tb, slot + kTcATileBytes, bar);
    }
#endif
    if (ta.map == nullptr) stage_tile(a, ra, kBM, k0, kdim, slot);
    if (tb.map == nullptr) stage_tile(b, rb, bn, k0, kdim, slot + kTcATileBytes);
  }

#if defined(IK_WGMMA)
  __device__ __forceinline__ static void issue_boxes(const TmaTile& t, char* tile, uint64_t* bar) {
    for (int i = 0; i < t.boxes; ++i)
      ptx::tma_load_4d(tile + i * t.box_bytes, t.map, t.c[0] + i * t.dc0, t.c[1] + i * t.dc1, t.c[2], t.c[3], bar);
  }
#endif

  // Chunk i of a thread's share of an operand tile (rows = 64 for A, bn for B): line
  // l0 + i * lstep, chunk c of the line (see stage_tile).
  template <class Op>
  __device__ __forceinline__ static void chunk_slot(int rows, int i, int* line, int* c) {
    using namespace tiling;
    const int cpl = Op::kKMajor ? kLineBytes / 16 : rows / kChunk;  // chunks per line
    *c = threadIdx.x % cpl;
    *line = threadIdx.x / cpl + i * (kThreads / cpl);
  }

  // What a thread needs of an operand in every stage of a GEMM of `rows` rows (at most 16 * kN).
  // For a loader with the two-step form (HasRows: K-major, so the thread's rows are the same in
  // every stage and all its chunks of a stage share one k = k0 + c * kChunk): the Row state of
  // each of its lines, computed once before the k loop, and, where the loader keeps its k as a
  // cursor (HasCol), that cursor, moved on to each stage's k0 as it is staged (seek: the stages
  // of a GEMM go in order, kTcBK apart; one staged by another path is stepped over at the next
  // seek). A loader whose Row is cheap (kRowsPerStage) has it made again for each chunk instead
  // of kept. For any other loader nothing: each chunk comes from chunk(r, k, ...) -- or, for an
  // MN-major loader with a cursor (HasCol), from chunk_at(r, cursor): stage_tile places the
  // cursor at the k of the thread's first line of the stage, k0 + line0 (the one col() per
  // stage), and steps it from chunk to chunk (its lines are lstep apart). Kept across stages
  // it would cost registers the 128-wide mma.sync grads kernel does not have. The loops over a
  // thread's chunks are not unrolled (a chunk's address math once in the code: registers and
  // compile time; the copies are async), so the Rows stay in registers by constant indices
  // only: row i is written and read through a select chain over j.
  template <class Op, int kN>
  struct ThreadRows {
    static constexpr bool kHoisted = HasRows<Op>::value;
    static constexpr bool kKept = kHoisted && !RowsPerStage<Op>::value;  // the Rows live in registers
    static constexpr bool kCursor = kHoisted && HasCol<Op>::value;
    static constexpr bool kLineCursor = !Op::kKMajor && HasCol<Op>::value;  // MN-major, k as a cursor (stage_tile)
    using Row = typename RowOf<Op>::type;
    using Col = typename ColOf<Op>::type;
    Row row[kKept ? kN : 1];
    Col col;     // the K position of the thread's chunks in stage k0 (kCursor)
    int k0 = 0;  // the stage col is at
    __device__ __forceinline__ ThreadRows(const Op& op, int rows) : row{}, col{} {
      if constexpr (kKept) {
#pragma unroll 1
        for (int i = 0; i < rows / 16; ++i) {
          int line = 0, c = 0;
          chunk_slot<Op>(rows, i, &line, &c);
          const Row r = op.row(line);
#pragma unroll
          for (int j = 0; j < kN; ++j)
            if (j == i) row[j] = r;
        }
      }
      if constexpr (kCursor) {
        int line = 0, c = 0;
        chunk_slot<Op>(rows, 0, &line, &c);
        col = op.col(c * tiling::kChunk);  // stage 0
      }
      (void)op, (void)rows;
    }
    // Chunk i of the thread (row r, k) in the current stage: the loader's chunk_at from the
    // hoisted Row (and the cursor, or k), or chunk.
    __device__ __forceinline__ const T* chunk(const Op& op, int i, int r, int k, int kvalid, T* v, int* valid) const {
      if constexpr (kHoisted) {
        Row at = row[0];
        if constexpr (kKept) {
#pragma unroll
          for (int j = 1; j < kN; ++j)
            if (j == i) at = row[j];
        } else {
          at = op.row(r);
        }
        if constexpr (kCursor)
          return op.chunk_at(at, col, kvalid, v, valid);
        else
          return op.chunk_at(at, k, kvalid, v, valid);
      } else {
        (void)i;
        return op.chunk(r, k, kvalid, v, valid);
      }
    }
    // The cursor moves on to stage `stage_k0` (>= the stage it is at).
    __device__ __forceinline__ void seek(const Op& op, int stage_k0) {
      if constexpr (kCursor) {
        if (stage_k0 != k0) op.advance(col, stage_k0 - k0);
        k0 = stage_k0;
      }
      (void)op, (void)stage_k0;
    }
  };

  // One operand tile of a stage: the chunks of A (rows = 64) or B (rows = bn) for k0 .. k0 + kTcBK - 1.
  // K-major: rows lines of 8 chunks; MN-major: kTcBK lines of rows / 8 chunks. Either way
  // rows / 16 chunks per thread, thread t at chunk t % (chunks per line) of every
  // (kThreads / chunks per line)-th line (chunk_slot). `rs`: the thread's rows (ThreadRows); a
  // GEMM's stages k0 = 0, kTcBK, 2 kTcBK, ... come in this order.
  template <class Op, class Rows>
  __device__ __forceinline__ void stage_tile(const Op& op, Rows& rs, int rows, int k0, int kdim, char* tile) const {
    using namespace tiling;
    rs.seek(op, k0);
    [[maybe_unused]] typename Rows::Col lc{};  // (kLineCursor) the k of chunk i's line
#pragma unroll 1  // see ThreadRows
    for (int i = 0; i < rows / 16; ++i) {
      int line = 0, c = 0;
      chunk_slot<Op>(rows, i, &line, &c);
      if constexpr (Rows::kLineCursor) {
        if (i == 0)
          lc = op.col(k0 + line);
        else
          op.advance(lc, kThreads / (rows / kChunk));  // the line step of chunk_slot
      }
      const int r = Op::kKMajor ? line : c * kChunk;
      const int k = Op::kKMajor ? k0 + c * kChunk : k0 + line;
      char* dst = tile + tc_chunk_offset(line, c);
      alignas(16) T v[kChunk];
      if (k >= kdim) {
        zero8(v);
        ptx::st_shared16(dst, v);
        continue;
      }
      int valid = 0;
      const T* src = nullptr;
      if constexpr (Rows::kLineCursor)
        src = op.chunk_at(r, lc, kChunk, v, &valid);
      else
        src = rs.chunk(op, i, r, k, Op::kKMajor ? imin(kChunk, kdim - k) : kChunk, v, &valid);
      if (src != nullptr)
        ptx::cp_async16(dst, src, valid * static_cast<int>(sizeof(T)));
      else
        ptx::st_shared16(dst, v);
    }
  }

  // fn(i) for i in [0, count), spread over the block's threads, between two barriers.
  template <class F>
  __device__ void parallel_for(int count, const F& fn) const {
    __syncthreads();
    for (int i = threadIdx.x; i < count; i += tiling::kThreads) fn(i);
    __syncthreads();
  }

  // C[m] = sum over k < kdim of A(m, k) for the 64 rows of an MN-major operand, then
  // epi(m, 0, C[m]): a bias gradient as a reduction. Thread t sums chunk column t % 8 over
  // every 16th k from t / 8 (with the loader's k cursor where it has one, HasCol: stepped 16
  // at a time, no divide per chunk); the 16 partial rows then add up in order through shared
  // memory.
  template <class A, class E>
  __device__ void reduce_rows(const A& a, int kdim, const E& epi) const {
    static_assert(!A::kKMajor, "reduce_rows sums the rows of an MN-major operand");
    using namespace tiling;
    using Acc = AccT<T>;
    constexpr int kCols = kBM / kChunk, kLanes = kThreads / kCols;
    const int c = threadIdx.x % kCols, lane = threadIdx.x / kCols;
    Acc s[kChunk];
#pragma unroll
    for (int j = 0; j < kChunk; ++j) s[j] = Acc(0);
    [[maybe_unused]] typename ColOf<A>::type kc{};
    if constexpr (HasCol<A>::value) kc = a.col(lane);
    for (int k = lane; k < kdim; k += kLanes) {
      alignas(16) T v[kChunk];
      if constexpr (HasCol<A>::value) {
        int valid = 0;
        const T* src = a.chunk_at(c * kChunk, kc, kChunk, v, &valid);  // before valid is read
        chunk_values<T>(src, valid, v);
        a.advance(kc, kLanes);
      } else {
        fetch_chunk<T>(a, c * kChunk, k, kChunk, v);
      }
#pragma unroll
      for (int j = 0; j < kChunk; ++j) s[j] += Num<T>::to_acc(v[j]);
    }
    Acc* part = reinterpret_cast<Acc*>(smem);  // [kLanes][kBM] in the staging area
    __syncthreads();  // the previous gemm is done with the staging area
#pragma unroll
    for (int j = 0; j < kChunk; ++j) part[lane * kBM + c * kChunk + j] = s[j];
    __syncthreads();
    if (threadIdx.x < kBM) {
      Acc t = Acc(0);
      for (int l = 0; l < kLanes; ++l) t += part[l * kBM + threadIdx.x];
      epi(threadIdx.x, 0, t);
    }
  }

  // The widest product one pass of the core computes: the tensor cores take a whole tile up to
  // N = kMaxBN in one pass over k (wgmma m64nNk16; on sm_80 each of the 2 x 2 warps holds a
  // 32 x 64 quarter, 64 accumulators), so A is staged once per tile; the SIMT micro-tiles run
  // a wider tile as kSimtBN-wide passes.
  static constexpr int kCoreBN = Num<T>::kTensorCore ? tiling::kMaxBN : tiling::kSimtBN;

  // C = A[kBM, kdim] x B[kdim, bn]; then epi(m, n, C[m, n]) for every element (n < bn).
  // bn: a multiple of 16 up to kMaxBN (tiling::n_tile_width: 16, 32, 64 or 128).
  template <class A, class B, class E>
  __device__ void gemm(const A& a, const B& b, int kdim, int bn, const E& epi) const {
#if defined(IK_WGMMA)
    ptx::fence_proxy_async();  // this thread's generic accesses to the staging area come before the TMA writes
#endif
    __syncthreads();  // the previous gemm is done with the staging area (and its epilogue's writes are visible)
    if constexpr (kCoreBN >= tiling::kMaxBN) {
      gemm_pass(a, b, kdim, bn, epi);
    } else {
      for (int nh = 0; nh < bn; nh += kCoreBN) {
        if (nh > 0) __syncthreads();  // the previous pass is done with the staging area
        gemm_pass(a, ShiftedB<B>{b, nh}, kdim, tiling::imin(kCoreBN, bn - nh), ShiftedEpilogue<E>{epi, nh, bn});
      }
    }
  }

  // One pass of the core: C[kBM, bn] with bn <= kCoreBN.
  template <class A, class B, class E>
  __device__ void gemm_pass(const A& a, const B& b, int kdim, int bn, const E& epi) const {
    if constexpr (Num<T>::kTensorCore) {
#if defined(IK_WGMMA)
      constexpr bool kSplit = true;
#else
      constexpr bool kSplit = kTwoWidths;
#endif
      // Two widths per product (kTwoWidths), fixed at compile time for its whole k-loop (bn <= 64
      // runs as N = 64), so the ring's slot stride is a constant (tiling::tc_slot_bytes). On
      // sm_90a it is also the wgmma shape: with the shape chosen at run time inside the loop,
      // ptxas serializes every wgmma (a WARPGROUP.ARRIVE and a wait after each one: warning
      // C7519) instead of chaining a stage's four. Two, not one per width: half the code.
      if constexpr (kSplit) {
        if (bn > 64)
          gemm_tensor_core<128>(a, b, kdim, bn, epi);
        else
          gemm_tensor_core<64>(a, b, kdim, bn, epi);
      } else {
        gemm_tensor_core<kCoreBN>(a, b, kdim, bn, epi);
      }
    } else
      gemm_simt(a, b, kdim, epi);  // always kSimtBN columns: the zero-filled ones past bn are filtered
  }

  // kN: the widest bn the instantiation takes; on sm_90a the wgmma's N (columns bn .. kN - 1 of
  // the B tile are stale, so are those of C: the epilogue skips them).
  template <int kN, class A, class B, class E>
  __device__ void gemm_tensor_core(const A& a, const B& b, int kdim, int bn, const E& epi) const {
    using namespace tiling;
    const int steps = cdiv(kdim, kTcBK);
    ThreadRows<A, kBM / 16> ra(a, kBM);  // the row part of the thread's chunks' addresses, once
    ThreadRows<B, kN / 16> rb(b, bn);
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < steps) load_stage<kN>(a, b, ra, rb, s, kdim, bn);
      ptx::cp_async_commit();  // one group per stage, empty past the end: the wait counts stay uniform
    }
#if defined(IK_WGMMA)
    float acc[kN / 2];  // d[4 j + e] of 8-column block j (wgmma's accumulator fragment)
#pragma unroll
    for (int i = 0; i < kN / 2; ++i) acc[i] = 0.0f;
#else
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    constexpr int kNb = kN / 16;  // the most 8-column blocks per warp
    const int nb = bn / 16;  // 8-column blocks of each warp
    const int wm = (warp / 2) * 32, wn = (warp % 2) * (bn / 2);
    float acc[2][kNb][4];  // [16-row block i][8-column block j]: mma_16816's d
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < kNb; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
#endif
    for (int kt = 0; kt < steps; ++kt) {
      ptx::cp_async_wait<kStages - 2>();  // this thread's chunks of stage kt have landed
#if defined(IK_WGMMA)
      if (stage_has_tma(a, b, kt, bn)) {  // ... and stage kt's boxes
        const int slot = kt % kStages;
        ptx::mbar_wait(&bars[slot], (phases >> slot) & 1u);
        phases ^= 1u << slot;
      }
      ptx::fence_proxy_async();  // ... and, with its st.shared chunks, are visible to wgmma
#endif
      __syncthreads();  // every thread's chunks of stage kt; everyone is done with stage kt - 1
      const int next = kt + kStages - 1;  // into stage kt - 1's slot
      const char* at = smem + (kt % kStages) * tiling::tc_slot_bytes(kN);
      const char* bt = at + kTcATileBytes;
#if defined(IK_WGMMA)
      // Stage kt's warpgroup MMAs are issued first and run while this thread stages `next`
      // (its computed chunks -- max-pool, masked gradients, gathers -- and its copies, into
      // another slot); then the wait: the stage is read before the barrier that lets it be
      // refilled.
      ptx::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kTcBK / 16; ++kk)
        ptx::wgmma_m64nNk16<T, kN, A::kKMajor ? 0 : 1, B::kKMajor ? 0 : 1>(
            acc, desc_sw128<A::kKMajor>(at, kk), desc_sw128<B::kKMajor>(bt, kk), 1);
      ptx::wgmma_commit();
      if (next < steps) load_stage<kN>(a, b, ra, rb, next, kdim, bn);
      ptx::cp_async_commit();
      ptx::wgmma_wait<0>();
#else
      if (next < steps) load_stage<kN>(a, b, ra, rb, next, kdim, bn);
      ptx::cp_async_commit();
#pragma unroll
      for (int kk = 0; kk < kTcBK / 16; ++kk) {
        uint32_t fa[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i) load_a_fragment<A::kKMajor>(fa[i], at, wm + 16 * i, kk, lane);
        // B's fragments are read pair by pair, each pair used at once: 4 registers live, not
        // 2 kNb (the 128-wide pass's 64 accumulators leave no room for the whole row).
#pragma unroll
        for (int j = 0; j < kNb; j += 2) {
          if (j >= nb) break;
          uint32_t fb[2][2];  // one ldmatrix.x4: 8-column blocks j and j + 1 (with nb = 1, half of one)
          load_b_fragments<B::kKMajor>(fb[0], fb[1], bt, wn + 8 * j, kk, lane);
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            ptx::mma_16816<T>(acc[i][j], fa[i], fb[0]);
            if (j + 1 < nb) ptx::mma_16816<T>(acc[i][j + 1], fa[i], fb[1]);
          }
        }
      }
#endif
    }
    ptx::cp_async_wait<0>();  // no copy outlives the gemm (the trailing groups are empty)
    __syncthreads();  // every warp is done with the last stage: C goes to the staging area
    float* c = reinterpret_cast<float*>(smem);  // [kBM][ldc]
    const int ldc = bn + kCPad;
#if defined(IK_WGMMA)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int j = 0; j < kN / 8; ++j)
      if (8 * j < bn) store_fragment(c, ldc, 16 * warp + lane / 4, 8 * j + 2 * (lane % 4), &acc[4 * j]);
#else
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < kNb; ++j)
        if (j < nb) store_fragment(c, ldc, wm + 16 * i + lane / 4, wn + 8 * j + 2 * (lane % 4), acc[i][j]);
#endif
    __syncthreads();
    const int cpr = bn / kChunk;  // chunks per row
    for (int e = threadIdx.x; e < kBM * cpr; e += kThreads) {
      const int m = e / cpr, n = (e % cpr) * kChunk;
      epilogue_chunk(epi, m, n, static_cast<const float*>(c + m * ldc + n));  // read from shared memory: no local array
    }
  }

  // The accumulator tile's row padding: row stride bn + 8 floats (8 mod 32 words, 24 at bn = 16),
  // so the fragments' 8-byte stores of a half-warp (4 rows x 4 column pairs) hit 32 banks.
  static constexpr int kCPad = 8;

  // An mma fragment's d[0..3] (rows r, r + 8; columns n, n + 1) into the accumulator tile.
  __device__ __forceinline__ static void store_fragment(float* c, int ldc, int r, int n, const float* d) {
    c[r * ldc + n] = d[0], c[r * ldc + n + 1] = d[1];
    c[(r + 8) * ldc + n] = d[2], c[(r + 8) * ldc + n + 1] = d[3];
  }

  // The B operand and the epilogue of columns nh .. nh + kSimtBN - 1 (a SIMT half of a wide tile).
  template <class B>
  struct ShiftedB {
    static constexpr bool kKMajor = B::kKMajor;
    const B& b;
    int nh;
    __device__ const T* chunk(int r, int k, int kvalid, T* v, int* valid) const {
      return b.chunk(r + nh, k, kvalid, v, valid);
    }
  };
  template <class E>
  struct ShiftedEpilogue {
    const E& epi;
    int nh, bn;
    __device__ void operator()(int m, int n, AccT<T> acc) const {
      if (n + nh < bn) epi(m, n + nh, acc);
    }
    __device__ void chunk(int m, int n, const AccT<T>* acc) const { epilogue_chunk(epi, m, n + nh, acc); }
  };

#if defined(IK_WGMMA)
  // wgmma's matrix descriptor of k-step kk (16 deep) of a swizzled tile (PTX ISA, "Matrix
  // Descriptor Format"; canonical 128-byte-swizzle layouts): start address >> 4 in bits 0-13,
  // leading byte offset >> 4 in 16-29, stride byte offset >> 4 in 32-45, swizzle mode 1
  // (128 B) in 62-63. K-major ((8,m),(T,2k)):((8T,SBO),(1,T)): rows 128 B apart, 8-row groups
  // SBO = 1024 B apart (up to 128 rows), the k-step 32 B into the line; LBO unused (1).
  // MN-major ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)): 64 rows per line of a swizzle atom, the next
  // 64 rows LBO = kTcAtomBytes on (tc_chunk_offset), k lines 128 B apart, 8-k groups SBO =
  // 1024 B apart, the k-step 16 lines on. The tile is 1024-byte aligned.
  template <bool kKMajor>
  __device__ __forceinline__ static uint64_t desc_sw128(const char* tile, int kk) {
    const uint32_t start = ptx::smem_u32(tile) + (kKMajor ? kk * 32 : kk * 16 * tiling::kLineBytes);
    const uint64_t lbo = kKMajor ? 1 : tiling::kTcAtomBytes >> 4;
    return static_cast<uint64_t>((start >> 4) & 0x3FFF) | (lbo << 16) |
           (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
  }
#else
  // The A fragment (16 rows from m0, k-step kk) of mma_16816 with one ldmatrix.x4: matrices
  // (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15). Lane l
  // addresses row l % 8 of matrix l / 8: a row of a K-major tile, or (.trans) a k line of an
  // MN-major tile, whose transpose gives the same fragment.
  template <bool kKMajor>
  __device__ __forceinline__ static void load_a_fragment(uint32_t (&f)[4], const char* tile, int m0, int kk, int lane) {
    const int mat = lane / 8, r = lane % 8;
    if (kKMajor) {
      ptx::ldmatrix_x4(f, tile + tiling::swizzle128(m0 + 8 * (mat % 2) + r, 2 * kk + mat / 2));
    } else {
      ptx::ldmatrix_x4_trans(f, tile + tiling::swizzle128(16 * kk + 8 * (mat / 2) + r, (m0 + 8 * (mat % 2)) / 8));
    }
  }

  // The B fragments of two n8 blocks (16 columns from n0, k-step kk) with one ldmatrix.x4:
  // matrices (n 0-7, k 0-7) -> b0[0], (n 0-7, k 8-15) -> b0[1], (n 8-15, k 0-7) -> b1[0],
  // (n 8-15, k 8-15) -> b1[1]; lines are n (K-major) or k (MN-major, .trans).
  template <bool kKMajor>
  __device__ __forceinline__ static void load_b_fragments(uint32_t (&b0)[2], uint32_t (&b1)[2], const char* tile, int n0,
                                                          int kk, int lane) {
    const int mat = lane / 8, r = lane % 8;
    uint32_t f[4];
    if (kKMajor) {
      ptx::ldmatrix_x4(f, tile + tiling::swizzle128(n0 + 8 * (mat / 2) + r, 2 * kk + mat % 2));
    } else {
      ptx::ldmatrix_x4_trans(f, tile + tiling::tc_chunk_offset(16 * kk + 8 * (mat % 2) + r, (n0 + 8 * (mat / 2)) / 8));
    }
    b0[0] = f[0], b0[1] = f[1], b1[0] = f[2], b1[1] = f[3];
  }
#endif

  template <class A, class B, class E>
  __device__ void gemm_simt(const A& a, const B& b, int kdim, const E& epi) const {
    using namespace tiling;
    using Acc = AccT<T>;
    T* as = reinterpret_cast<T*>(smem);
    T* bs = as + kSimtTileElems;
    constexpr int kTm = 4, kTn = 8;  // per-thread micro-tile; 16 x 8 threads cover 64 x 64
    const int tr = threadIdx.x / (kSimtBN / kTn), tc = threadIdx.x % (kSimtBN / kTn);
    Acc acc[kTm][kTn];
#pragma unroll
    for (int i = 0; i < kTm; ++i)
#pragma unroll
      for (int j = 0; j < kTn; ++j) acc[i][j] = Acc(0);
    for (int k0 = 0; k0 < kdim; k0 += kSimtBK) {
      stage_simt(a, k0, kdim, as);
      stage_simt(b, k0, kdim, bs);
      __syncthreads();
#pragma unroll 4
      for (int kk = 0; kk < kSimtBK; ++kk) {
        Acc av[kTm], bv[kTn];
#pragma unroll
        for (int i = 0; i < kTm; ++i) av[i] = Num<T>::to_acc(simt_at<A::kKMajor>(as, tr * kTm + i, kk));
#pragma unroll
        for (int j = 0; j < kTn; ++j) bv[j] = Num<T>::to_acc(simt_at<B::kKMajor>(bs, tc * kTn + j, kk));
#pragma unroll
        for (int i = 0; i < kTm; ++i)
#pragma unroll
          for (int j = 0; j < kTn; ++j) acc[i][j] += av[i] * bv[j];
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < kTm; ++i)
#pragma unroll
      for (int j = 0; j < kTn; ++j) epi(tr * kTm + i, tc * kTn + j, acc[i][j]);
  }

  // Element (row r, k) of a SIMT tile: [kBM][kSimtLdK] K-major, [kSimtBK][kSimtLdM] MN-major.
  template <bool kKMajor>
  __device__ __forceinline__ static T& simt_at(T* t, int r, int k) {
    return kKMajor ? t[r * tiling::kSimtLdK + k] : t[k * tiling::kSimtLdM + r];
  }

  // The 128 chunks of a SIMT tile (64 rows x 16 k): one per thread.
  template <class Op>
  __device__ __forceinline__ void stage_simt(const Op& op, int k0, int kdim, T* tile) const {
    using namespace tiling;
    const int e = threadIdx.x;
    const int r = Op::kKMajor ? e / (kSimtBK / kChunk) : (e % (kBM / kChunk)) * kChunk;
    const int k = Op::kKMajor ? k0 + (e % (kSimtBK / kChunk)) * kChunk : k0 + e / (kBM / kChunk);
    alignas(16) T v[kChunk];
    if (k < kdim)
      fetch_chunk<T>(op, r, k, Op::kKMajor ? imin(kChunk, kdim - k) : kChunk, v);
    else
      zero8(v);
#pragma unroll
    for (int j = 0; j < kChunk; ++j) {
      if (Op::kKMajor)
        simt_at<true>(tile, r, k - k0 + j) = v[j];
      else
        simt_at<false>(tile, r + j, k - k0) = v[j];
    }
  }
};

}  // namespace inception_kernels
