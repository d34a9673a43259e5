// The fused Inception algorithm of the CUDA C++ kernels, as host + device code
// (docs/design.md §3-4; the same algorithm as the Triton path).
//
// A job is one thread block's work. Every product in a job is a GEMM tile
// C[kBM, bn] = sum_k A(m, k) * B(k, n) handed to `core.gemm(a, b, kdim, bn, epilogue)`, its
// width bn sized to the channels (tiling::n_tile_width):
//   - the loaders `a` / `b` hand out their operand in chunks of 8 elements (tiling::kChunk)
//     along the operand's contiguous direction (see "Operand chunks" below): either a pointer
//     to 16 aligned bytes in global memory, which the core copies with cp.async, or 8 values
//     they computed (a max-pool, a ReLU-masked gradient, the halo in shared memory, a gather
//     from a tensor whose layout has no aligned chunks);
//   - the epilogue `epi(m, n, acc)` consumes one accumulator (bias, ReLU, store, ...).
// The Core decides how the product is computed: inception_core.cuh runs a cp.async ring into
// swizzled shared tiles and tensor-core MMAs (fp16/bf16) or a SIMT loop (fp32/fp64), and
// tests/csrc/emulator.cpp runs the very same jobs with a plain loop on the CPU (and the
// device core itself, with emulated PTX), which is how the loaders, epilogues and job
// decomposition are tested without a GPU.
//
// Plain C++ (no CUDA or torch header): ops.cpp fills the parameter structs, the emulator
// compiles everything here with g++.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "inception_tiling.h"

namespace inception_kernels {

// Numeric traits of an element type T: its accumulator type and the conversions.
// float and double here; __half and __nv_bfloat16 in inception_num_cuda.cuh.
template <class T>
struct Num;

// Plain element access for the SIMT types (and host code): load(p) = *p, copy8 a loop.
template <class T>
struct PlainAccess {
  static IK_HD T load(const T* p) { return *p; }
  static IK_HD void copy8(T* dst, const T* src) {
    for (int j = 0; j < 8; ++j) dst[j] = src[j];
  }
};

template <>
struct Num<float> : PlainAccess<float> {
  using Acc = float;
  static constexpr bool kTensorCore = false;
  static IK_HD float to_acc(float v) { return v; }
  static IK_HD float from_acc(float v) { return v; }
};

template <>
struct Num<double> : PlainAccess<double> {
  using Acc = double;
  static constexpr bool kTensorCore = false;
  static IK_HD double to_acc(double v) { return v; }
  static IK_HD double from_acc(double v) { return v; }
};

template <class T>
using AccT = typename Num<T>::Acc;

template <class A>
IK_HD A activate(A v, bool relu) {
  return relu && v < A(0) ? A(0) : v;  // NaN stays NaN, as in torch.relu
}

// ---------------------------------------------------------------------------------------
// Parameters (filled on the host by ops.cpp; passed by value to the kernels)
// ---------------------------------------------------------------------------------------

struct TensorRef {  // a 4-D tensor [N, C, H, W] by element strides (any memory format)
  const void* p;
  int64_t s[4];
  bool vec;  // chunks of 8 channels are contiguous and 16-byte aligned (plan::chunked)
  IK_HD int64_t offset(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return n * s[0] + c * s[1] + h * s[2] + w * s[3];
  }
};

struct OutRef {  // a 4-D output tensor; p is null when it is not written
  void* p;
  int64_t s[4];
  IK_HD int64_t offset(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return n * s[0] + c * s[1] + h * s[2] + w * s[3];
  }
};

struct ConvRef {  // weight [cout, cin, k, k] by strides, bias [cout] by its stride (null when absent)
  const void* w;
  int64_t s[4];
  const void* b;
  int64_t b_stride;  // a bias may be any 1-D view (e.g. every other element of a buffer)
  int cout, cin, k;
  bool vec;  // chunks of 8 input channels w[co, ci..ci+7, dy, dx] are contiguous and 16-byte aligned
};

// Index of each conv in the parameter arrays (the op's weight order).
enum Conv : int { kW1 = 0, kW3r = 1, kW3 = 2, kW5r = 3, kW5 = 4, kWp = 5, kNumConvs = 6 };

// A TMA tensor map (CUtensorMap: 128 opaque bytes, 128-byte aligned as CUDA 13 declares it;
// cp.async.bulk.tensor needs 64), encoded on the host from a
// TmaSpec (plan::forward_tma); the kernels only pass its address to cp.async.bulk.tensor.
struct alignas(128) TmaMap {
  uint64_t opaque[16];
};

// What a TMA map describes: cuTensorMapEncodeTiled's arguments for 16-bit elements, the 128-byte
// swizzle (the core's tiles, tiling::swizzle128) and zero fill outside the tensor.
// Always 4-D (a 2-D weight matrix has two dimensions of 1), so the kernels issue one form.
struct TmaSpec {
  const void* base;     // 16-byte aligned
  uint64_t dims[4];     // elements per dimension, innermost (contiguous) first
  uint64_t strides[3];  // bytes between consecutive indices of dims 1 .. 3 (multiples of 16)
  uint32_t box[4];      // box elements per dimension; box[0] * 2 bytes = one 128-byte line
};

// The forward's TMA maps (sm_90a, fp16/bf16): x as [N][H][W][C] boxes of the tile (x[0]) and of
// the two KxK branches' reduce row tiles (x[1], x[2]: halo_tile_lines lines of the halo), and
// each conv's weights [cout][K K cin] in boxes of 16 rows (1x1 convs; KxK ones in channels_last
// with whole chunks). ok: the map exists (else the operand goes by chunks).
struct FwdTma {
  TmaMap x[3];
  TmaMap w[kNumConvs];
  bool x_ok[3];
  bool w_ok[kNumConvs];
};

struct FwdParams {
  FwdTma tma;      // first: the maps' alignment
  TensorRef x;     // [N, Cin, H, W]
  OutRef y;        // [N, c1 + c3 + c5 + cp, H, W]
  OutRef r[2];     // post-activation reduce outputs [N, c3r / c5r, H, W]; null unless saved
  ConvRef conv[kNumConvs];
  int64_t n;
  int h, w;
  bool relu;
  tiling::SpatialTiles tiles;
  int64_t halo_offset;  // byte offset of the halo buffer in shared memory
  int stage;            // which launch (tiling::FwdStage; plan::forward_stages)
};

// The backward's TMA maps (sm_90a, fp16/bf16), for the weight-gradient products of the grads
// launch: gr [N*H*W][gr_cols] in boxes of 64 pixels x 64 channels (A of dW3r / dW5r), and x as
// [N*H*W][Cin] (pixels evenly spaced) in boxes of 64 pixels x 64 channels (B of the 1x1 convs'
// dW). ok: the map exists.
struct BwdTma {
  TmaMap gr;
  TmaMap x;
  bool gr_ok, x_ok;
};

struct BwdParams {
  BwdTma tma;      // first: the maps' alignment
  TensorRef gy;    // [N, Ctot, H, W] upstream gradient
  TensorRef x;     // [N, Cin, H, W]
  TensorRef y;     // [N, Ctot, H, W] (ReLU masks of the four branches)
  TensorRef r[2];  // saved reduce outputs (ReLU masks, and the KxK weight gradients' inputs)
  void* gr;        // [N*H*W, pad8(c3r) + pad8(c5r)] row-major: reduce-output gradients (launch 1)
  OutRef dx;       // [N, Cin, H, W]; null when not needed
  void* partial;   // [S, P] accumulator-typed partial sums of the parameter gradients
  void* grads;     // [P] the flat gradient buffer (_layout.grad_layout) in the weights' dtype
  int64_t p_total;                 // P
  int64_t grad_offset[2 * kNumConvs];  // dW1..dWp, db1..dbp in the flat buffer; -1: not computed
  int64_t grad_stride[kNumConvs][4];   // strides of each dW in the flat buffer
  ConvRef conv[kNumConvs];
  tiling::BranchOffsets bo;
  int64_t n;
  int h, w;
  bool relu;
  tiling::PixelSplit split;
  tiling::SpatialTiles dx_tiles;   // the dx jobs' tiles (tiling::dx_tiles)
  int64_t reduce_jobs[2];          // launch 1: jobs of branch 3, of branch 5
  int64_t seg_end[tiling::kNumSegments];  // launch 2: cumulative job counts per segment
};

// One element from global memory. 16-bit types on the GPU read the aligned 32-bit word that
// holds it (Num<T>::load): no scalar 16-bit global load anywhere in the kernels.
template <class T>
IK_HD T load(const void* p, int64_t off) {
  return Num<T>::load(static_cast<const T*>(p) + off);
}

template <class T>
IK_HD T zero() {
  return Num<T>::from_acc(AccT<T>(0));
}

template <class T>
IK_HD void zero8(T* v) {
  for (int j = 0; j < tiling::kChunk; ++j) v[j] = zero<T>();
}

// Eight consecutive elements (16 bytes for 16-bit types: one vector load on the GPU).
template <class T>
IK_HD void copy8(T* dst, const T* src) {
  Num<T>::copy8(dst, src);
}

// Eight channels c0 .. c0 + 7 of t at (n, h, w), zero from c0 + count on: one 16-byte load
// where t has aligned chunks, else element by element.
template <class T>
IK_HD void load_channels(const TensorRef& t, int64_t n, int c0, int count, int h, int w, T* v) {
  if (t.vec && count >= tiling::kChunk) return copy8(v, static_cast<const T*>(t.p) + t.offset(n, c0, h, w));
  for (int j = 0; j < tiling::kChunk; ++j) v[j] = j < count ? load<T>(t.p, t.offset(n, c0 + j, h, w)) : zero<T>();
}

// Eight elements v (16-byte aligned) to dst (16-byte aligned) with 16-byte stores on the GPU:
// 8 * sizeof(T) / 16 of them (one for the 16-bit types, two for fp32 partial sums); the host
// copies element by element.
template <class T>
IK_HD void vec_store8(T* dst, const T* v) {
#if defined(__CUDA_ARCH__)
  static_assert(sizeof(T) * tiling::kChunk % 16 == 0, "8 elements are whole 16-byte vectors");
  IK_UNROLL
  for (int i = 0; i < static_cast<int>(sizeof(T)) * tiling::kChunk / 16; ++i)
    reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(v)[i];
#else
  copy8(dst, v);
#endif
}

// The first `count` of eight values v out to dst[j * stride]: 16-byte stores (vec_store8) where
// all eight go out, contiguous (stride 1) and 16-byte aligned, else element by element. Every
// epilogue's chunk store goes through here.
template <class T>
IK_HD void store8(T* dst, int64_t stride, int count, const T* v) {
  if (count == tiling::kChunk && stride == 1 && reinterpret_cast<uintptr_t>(dst) % 16 == 0) return vec_store8(dst, v);
  IK_UNROLL
  for (int j = 0; j < tiling::kChunk; ++j)
    if (j < count) dst[j * stride] = v[j];
}

// Eight elements from src (stride apart), zero from `count` on: one 16-byte load where all 8 are
// contiguous and 16-byte aligned, else element by element. The mirror of store8.
template <class T>
IK_HD void load8(const T* src, int64_t stride, int count, T* v) {
  if (count >= tiling::kChunk && stride == 1 && reinterpret_cast<uintptr_t>(src) % 16 == 0) return copy8(v, src);
  for (int j = 0; j < tiling::kChunk; ++j) v[j] = j < count ? Num<T>::load(src + j * stride) : zero<T>();
}

// Eight channels c0 .. c0 + 7 of t at (n, h, w), the first `count` of v: one 16-byte store
// where they are contiguous and 16-byte aligned (channels_last, aligned channel offset), else
// element by element (store8). The mirror of load_channels.
template <class T>
IK_HD void store_channels(const OutRef& t, int64_t n, int c0, int count, int h, int w, const T* v) {
  store8(static_cast<T*>(t.p) + t.offset(n, c0, h, w), t.s[1], count, v);
}

// ---------------------------------------------------------------------------------------
// Epilogues
// ---------------------------------------------------------------------------------------
//
// An epilogue takes a product's results element by element, epi(m, n, acc), and may also take
// eight columns n .. n + 7 of a row at once (8 | n), epi.chunk(m, n, acc[8]): then the row's
// address math runs once and the eight outputs go out in 16-byte stores where the layout
// allows (store8). Every epilogue that writes global memory has a chunk form (forward: y, r;
// backward: gr, dx, the weight gradients' partial sums); those into shared memory only
// (DxPoolProductEpilogue) take elements. The tensor-core core hands out chunks
// (epilogue_chunk), the SIMT core elements.

template <class E, class = void>
struct HasChunk : std::false_type {};
template <class E>
struct HasChunk<E, std::void_t<decltype(&E::chunk)>> : std::true_type {};

IK_NO_EXEC_CHECK
template <class E, class Acc>
IK_HD void epilogue_chunk(const E& epi, int m, int n, const Acc* acc) {
  if constexpr (HasChunk<E>::value) {
    epi.chunk(m, n, acc);
  } else {
    for (int j = 0; j < tiling::kChunk; ++j) epi(m, n + j, acc[j]);
  }
}

// ---------------------------------------------------------------------------------------
// Operand chunks
// ---------------------------------------------------------------------------------------
//
// A loader is K-major (kKMajor: a chunk is row r, k .. k + 7; r = m for A, n for B) or
// MN-major (a chunk is rows r .. r + 7 at one k; r a multiple of 8). The core asks for the
// chunks of a tile with
//   const T* chunk(int r, int k, int kvalid, T* v, int* valid) const;
// kvalid: how many of the chunk's k are below the GEMM's kdim (K-major; 8 for MN-major, whose
// chunks at k >= kdim the core never asks for). It returns either a pointer to 8 elements in
// global memory, contiguous and 16-byte aligned, of which the first *valid are the operand's
// (the rest read as zero), or null after writing the 8 values into v (zero outside the operand).
//
// A K-major loader may also hand out its chunks in two steps (HasRows), which the device core
// uses (DeviceCore::ThreadRows): a thread stages the same rows in every stage of a GEMM, only k
// moves, so what a chunk needs of its row -- the pixel and its validity (runtime divides), a base
// pointer -- is computed once per GEMM, and each stage's chunks only add k:
//   Row row(int r) const;                                            // once per GEMM and row
//   const T* chunk_at(const Row& row, int k, int kvalid, T* v, int* valid) const;  // per stage
// A loader whose k must be decomposed (the (tap, channel) index of a KxK conv) may also keep it
// as a cursor (HasCol), which the core steps from stage to stage instead of passing k:
//   Col col(int k) const;                    // the position of k (once per GEMM)
//   void advance(Col& col, int dk) const;    // col of k -> col of k + dk, without a divide
//   const T* chunk_at(const Row& row, const Col& col, int kvalid, T* v, int* valid) const;
// chunk(r, k, ...) is then chunk_at(row(r), k or col(k), ...): one source for both forms.
// An MN-major chunk's row stays put while its line is a k that moves: nothing per row to hoist,
// but the k of a thread's chunks (a pixel or a (tap, channel) index: divides) can be a cursor
// too (HasCol). The core keeps it at the k of the thread's first line of the stage and steps a
// copy from chunk to chunk (the thread's lines are evenly spaced):
//   Col col(int k) const;  void advance(Col& col, int dk) const;
//   const T* chunk_at(int r, const Col& col, int kvalid, T* v, int* valid) const;
// and chunk(r, k, ...) is chunk_at(r, col(k), ...).
template <class Op, class = void>
struct HasRows : std::false_type {};
template <class Op>
struct HasRows<Op, std::void_t<decltype(std::declval<const Op&>().row(0))>> : std::bool_constant<Op::kKMajor> {};
// A loader whose Row is as cheap to make as to keep (an add and a compare) says
//   static constexpr bool kRowsPerStage = true;
// and the core calls row(r) again for each chunk instead of keeping a register per row: at
// 128-wide B tiles (8 rows a thread) the mma.sync kernels need those registers.
template <class Op, class = void>
struct RowsPerStage : std::false_type {};
template <class Op>
struct RowsPerStage<Op, std::void_t<decltype(Op::kRowsPerStage)>> : std::bool_constant<Op::kRowsPerStage> {};
template <class Op, class = void>
struct HasCol : std::false_type {};
template <class Op>
struct HasCol<Op, std::void_t<decltype(std::declval<const Op&>().col(0))>> : std::true_type {};
// Op's Row where HasRows, else an empty struct.
template <class Op, bool = HasRows<Op>::value>
struct RowOf {
  struct type {};
};
template <class Op>
struct RowOf<Op, true> {
  using type = decltype(std::declval<const Op&>().row(0));
};
// Op's Col where HasCol, else the plain k.
template <class Op, bool = HasCol<Op>::value>
struct ColOf {
  using type = int;
};
template <class Op>
struct ColOf<Op, true> {
  using type = decltype(std::declval<const Op&>().col(0));
};

// The 8 elements of a chunk from a loader's answer: src (the first `valid` of its 8 elements
// are the operand's) or, where src is null, the values it wrote into out (16-byte aligned).
// A whole pointed-to chunk is one 16-byte load.
template <class T>
IK_HD void chunk_values(const T* src, int valid, T* out) {
  if (src == nullptr) return;
  if (valid >= tiling::kChunk) return copy8(out, src);
  for (int j = 0; j < tiling::kChunk; ++j) out[j] = j < valid ? Num<T>::load(src + j) : zero<T>();
}

// The 8 elements of a chunk, wherever they come from (the SIMT core, reductions and the CPU
// emulator).
template <class T, class Op>
IK_HD void fetch_chunk(const Op& op, int r, int k, int kvalid, T* out) {
  int valid = 0;
  const T* src = op.chunk(r, k, kvalid, out, &valid);  // before valid is read
  chunk_values<T>(src, valid, out);
}


// The 3x3 / stride 1 / pad 1 max-pool window of (h, w) scanned for channels c0 .. c0 + 7 at once
// (one 16-byte load per window pixel where x has aligned chunks), as tiling::pool_max scans one
// channel: best[j] the maximum (NaN-propagating like max_pool2d; exact, the maximum of T values),
// code[j] where it lies (tiling::pool_code relative to (h, w)).
template <class T>
IK_HD void pool_scan8(const TensorRef& x, int64_t n, int c0, int count, int h, int w, int height, int width,
                      AccT<T>* best, int* code) {
  const tiling::Window win = tiling::pool_window(h, w, height, width);
  for (int j = 0; j < tiling::kChunk; ++j)
    best[j] = -(AccT<T>(1) / AccT<T>(0)), code[j] = tiling::pool_code(win.h_lo, win.w_lo, h, w);
  for (int hh = win.h_lo; hh <= win.h_hi; ++hh)
    for (int ww = win.w_lo; ww <= win.w_hi; ++ww) {
      alignas(16) T t[tiling::kChunk];
      load_channels(x, n, c0, count, hh, ww, t);
      for (int j = 0; j < tiling::kChunk; ++j) {
        const AccT<T> a = Num<T>::to_acc(t[j]);
        if (tiling::pool_takes(a, best[j])) best[j] = a, code[j] = tiling::pool_code(hh, ww, h, w);
      }
    }
}

// The max-pool of channels c0 .. c0 + 7 at (h, w), zero from c0 + count on.
template <class T>
IK_HD void pooled8(const TensorRef& x, int64_t n, int c0, int count, int h, int w, int height, int width, T* v) {
  AccT<T> best[tiling::kChunk];
  int code[tiling::kChunk];
  pool_scan8<T>(x, n, c0, count, h, w, height, width, best, code);
  for (int j = 0; j < tiling::kChunk; ++j) v[j] = j < count ? Num<T>::from_acc(best[j]) : zero<T>();
}

// ---------------------------------------------------------------------------------------
// Forward operands and epilogues
// ---------------------------------------------------------------------------------------

// An operand tile of one stage as TMA boxes (the core's sm_90a path; docs/design.md §4.2): box i
// of `boxes` at coordinates c (innermost first) plus i * (dc0, dc1), landing box_bytes * i into
// the tile. map null: this stage of the operand goes by chunks. An operand offers this with
//   TmaTile tma(int k0, int rows) const;   (rows: the tile's rows the core stages)
// and must hand out exactly the tile the chunks would give, zeros included (k >= kdim reads as
// zero: the map's bounds, or no TMA for that stage).
struct TmaTile {
  const TmaMap* map;
  int boxes, box_bytes, dc0, dc1;
  int c[4];
};
IK_HD TmaTile no_tma() { return TmaTile{nullptr, 0, 0, 0, 0, {0, 0, 0, 0}}; }

// A(m, c) = x[n, c, pixel m] (or its 3x3 max-pool) for the tile's pixels (kTile, kTilePool)
// or for the halo pixels m0 + m < m0 + m_rows of a KxK branch (kHalo; k_halo = that branch's K;
// a row tile of tiling::halo_tile_step pixels). K-major.
template <class T>
struct XOperand {
  enum Mode : int { kTile, kTilePool, kHalo };
  static constexpr bool kKMajor = true;
  const FwdParams* p;
  tiling::FwdJob job;
  Mode mode;
  int m0, k_halo, m_rows;
  int map;  // its TMA map in p->tma.x: 0 the tile, 1 / 2 branch 3's / 5's halo row tiles; -1 none
  IK_HD TmaTile tma(int k0, int rows) const {
    (void)rows;
    const int i = map;
    if (i < 0 || !p->tma.x_ok[i]) return no_tma();
    const int n = static_cast<int>(job.n);
    if (i == 0) return TmaTile{&p->tma.x[0], 1, p->tiles.th * p->tiles.tw * tiling::kLineBytes, 0, 0, {k0, job.w0, job.h0, n}};
    const int hc = tiling::halo_cols(p->tiles, k_halo), pad = k_halo / 2;
    return TmaTile{&p->tma.x[i], 1, tiling::halo_tile_step(p->tiles, k_halo) * tiling::kLineBytes, 0, 0,
                   {k0, job.w0 - pad, job.h0 - pad + m0 / hc, n}};
  }
  struct Row {  // row m's pixel; h = -1: none (outside the image or past the row tile's rows)
    int h, w;     // two registers a row, not three: the hoisted rows of every thread stay in registers
  };
  IK_HD Row row(int m) const {
    if (mode == kHalo && m >= m_rows) return Row{-1, 0};
    const tiling::Pix px = mode == kHalo ? tiling::halo_pixel(m0 + m, job.h0, job.w0, p->tiles, k_halo, p->h, p->w)
                                         : tiling::tile_pixel(m, job.h0, job.w0, p->tiles, p->h, p->w);
    return Row{px.valid ? px.h : -1, px.w};
  }
  IK_HD const T* chunk_at(const Row& px, int c0, int kvalid, T* v, int* valid) const {
    if (px.h < 0) return zero8(v), nullptr;
    if (mode == kTilePool) return pooled8(p->x, job.n, c0, kvalid, px.h, px.w, p->h, p->w, v), nullptr;
    if (p->x.vec) return *valid = kvalid, static_cast<const T*>(p->x.p) + p->x.offset(job.n, c0, px.h, px.w);
    return load_channels(p->x, job.n, c0, kvalid, px.h, px.w, v), nullptr;
  }
  IK_HD const T* chunk(int m, int c0, int kvalid, T* v, int* valid) const { return chunk_at(row(m), c0, kvalid, v, valid); }
};

// B(kk, n) = w[n0 + n, c, dy, dx] with (dy, dx, c) = conv_tap(kk, pad8(cin), k): the forward
// conv's weights. K-major (a chunk: 8 input channels of one output channel and tap).
// The weights also come as TMA boxes of 16 rows (output channels) x 64 of kk where the plan made
// the map (`map`, plan::forward_tma; null otherwise).
template <class T>
struct WeightOperand {
  static constexpr bool kKMajor = true;
  const ConvRef* cv;
  int n0;
  const TmaMap* map;
  IK_HD TmaTile tma(int k0, int rows) const {
    if (map == nullptr) return no_tma();
    return TmaTile{map, rows / tiling::kTmaWeightRows, tiling::kTmaWeightRows * tiling::kLineBytes, 0,
                   tiling::kTmaWeightRows, {k0, n0, 0, 0}};
  }
  static constexpr bool kRowsPerStage = true;  // row(): an add and a compare (RowsPerStage)
  struct Row {
    int co;  // the output channel n0 + n; -1 past cout
  };
  IK_HD Row row(int n) const { return Row{n0 + n < cv->cout ? n0 + n : -1}; }
  using Col = tiling::Tap;
  IK_HD Col col(int kk) const { return tiling::conv_tap(kk, tiling::pad8(cv->cin), cv->k); }
  IK_HD void advance(Col& tp, int dk) const { tp = tiling::tap_advance(tp, dk, tiling::pad8(cv->cin), cv->k); }
  IK_HD const T* chunk_at(const Row& row, const Col& tp, int kvalid, T* v, int* valid) const {
    (void)kvalid;  // kdim = K * K * pad8(cin): the channel bound below is the tighter one
    const int count = cv->cin - tp.c;
    if (row.co < 0 || count <= 0) return zero8(v), nullptr;
    const int64_t off = row.co * cv->s[0] + tp.c * cv->s[1] + tp.dy * cv->s[2] + tp.dx * cv->s[3];
    if (cv->vec) return *valid = tiling::imin(count, tiling::kChunk), static_cast<const T*>(cv->w) + off;
    for (int j = 0; j < tiling::kChunk; ++j) v[j] = j < count ? load<T>(cv->w, off + j * cv->s[1]) : zero<T>();
    return nullptr;
  }
  IK_HD const T* chunk(int n, int kk, int kvalid, T* v, int* valid) const {
    return chunk_at(row(n), col(kk), kvalid, v, valid);
  }
};

// A(m, kk) = r[halo pixel of tile pixel m at tap (dy, dx), c]: the KxK conv over the halo
// buffer [halo pixel][pad8(cr)] in shared memory (its pad channels hold zeros). K-major.
template <class T>
struct HaloOperand {
  static constexpr bool kKMajor = true;
  const T* halo;
  tiling::SpatialTiles t;
  int cr, k;
  struct Row {
    int hp;  // the halo pixel tile pixel m reads at tap (0, 0); -1 past the tile
  };
  IK_HD Row row(int m) const { return Row{m < t.th * t.tw ? tiling::halo_index(m, 0, 0, t, k) : -1}; }
  using Col = tiling::Tap;
  IK_HD Col col(int kk) const { return tiling::conv_tap(kk, tiling::pad8(cr), k); }
  IK_HD void advance(Col& tp, int dk) const { tp = tiling::tap_advance(tp, dk, tiling::pad8(cr), k); }
  IK_HD const T* chunk_at(const Row& row, const Col& tp, int kvalid, T* v, int* valid) const {
    (void)kvalid, (void)valid;
    if (row.hp < 0) return zero8(v), nullptr;
    return copy8(v, halo + (row.hp + tiling::halo_tap(tp.dy, tp.dx, t, k)) * tiling::pad8(cr) + tp.c), nullptr;
  }
  IK_HD const T* chunk(int m, int kk, int kvalid, T* v, int* valid) const {
    return chunk_at(row(m), col(kk), kvalid, v, valid);
  }
};

template <class T>
IK_HD AccT<T> bias_at(const ConvRef& cv, int co) {
  return cv.b ? Num<T>::to_acc(load<T>(cv.b, co * cv.b_stride)) : AccT<T>(0);
}

// Non-finite weights and the zero padding (issue 16, item 8): a KxK conv's padding taps must
// contribute nothing, but a GEMM over a zero-padded operand adds 0 * w, which is NaN when w is
// +-inf or NaN. Such a NaN can only appear at pixels whose window reaches the padding
// (tiling::near_border), and a finite or infinite accumulator there had no NaN from a padding
// tap; so where a border accumulator is NaN, it is recomputed over the taps inside the image
// (exactly the sum PyTorch's definition asks for, in the accumulator type). Rare and local:
// the GEMMs themselves keep their dense form.

// The forward KxK conv at tile pixel m (image pixel h, w), output channel co, over the taps
// that read inside the image; the halo buffer holds the reduce output [halo pixel][pad8(cv.cin)].
template <class T>
IK_HD AccT<T> kxk_inside_taps(const T* halo, const tiling::SpatialTiles& t, const ConvRef& cv, int m, int co, int h,
                              int w, int height, int width) {
  AccT<T> s = AccT<T>(0);
  for (int dy = 0; dy < cv.k; ++dy)
    for (int dx = 0; dx < cv.k; ++dx) {
      if (!tiling::conv_source(h, w, dy, dx, cv.k, height, width).valid) continue;
      const T* r = halo + tiling::halo_index(m, dy, dx, t, cv.k) * tiling::pad8(cv.cin);
      for (int c = 0; c < cv.cin; ++c)
        s += Num<T>::to_acc(r[c]) *
             Num<T>::to_acc(load<T>(cv.w, co * cv.s[0] + c * cv.s[1] + dy * cv.s[2] + dx * cv.s[3]));
    }
  return s;
}

// y[n, c_off + n0 + col, tile pixel m] = act(acc + bias) (or into `out` instead of y: a reduce
// conv's saved output in stage 1). For a KxK conv, `halo` is its input (see kxk_inside_taps);
// null for the 1x1 convs.
template <class T>
struct OutputEpilogue {
  const FwdParams* p;
  tiling::FwdJob job;
  const ConvRef* cv;
  int n0, c_off;
  const T* halo;
  const OutRef* out = nullptr;  // null: y
  IK_HD const OutRef& dst() const { return out != nullptr ? *out : p->y; }
  IK_HD T value(int m, int co, const tiling::Pix& px, AccT<T> acc) const {  // co < cout, px inside
    if (halo != nullptr && acc != acc && tiling::near_border(px.h, px.w, cv->k, p->h, p->w))
      acc = kxk_inside_taps<T>(halo, p->tiles, *cv, m, co, px.h, px.w, p->h, p->w);
    return Num<T>::from_acc(activate(acc + bias_at<T>(*cv, co), p->relu));
  }
  IK_HD void operator()(int m, int col, AccT<T> acc) const {
    const int co = n0 + col;
    const tiling::Pix px = tiling::tile_pixel(m, job.h0, job.w0, p->tiles, p->h, p->w);
    if (!px.valid || co >= cv->cout) return;
    static_cast<T*>(dst().p)[dst().offset(job.n, c_off + co, px.h, px.w)] = value(m, co, px, acc);
  }
  IK_HD void chunk(int m, int col, const AccT<T>* acc) const {
    const int co0 = n0 + col;
    const tiling::Pix px = tiling::tile_pixel(m, job.h0, job.w0, p->tiles, p->h, p->w);
    if (!px.valid || co0 >= cv->cout) return;
    const int count = tiling::imin(tiling::kChunk, cv->cout - co0);
    alignas(16) T v[tiling::kChunk];
    IK_UNROLL
    for (int j = 0; j < tiling::kChunk; ++j) v[j] = j < count ? value(m, co0 + j, px, acc[j]) : zero<T>();
    store_channels<T>(dst(), job.n, c_off + co0, count, px.h, px.w, v);
  }
};

// The reduce conv over the halo: halo[p][co] = act(acc + bias) inside the image and 0 outside
// (the KxK conv's zero padding), and 0 in the pad channels cout <= co < pad8(cout); the tile's
// own pixels also go to r (saved for the backward).
template <class T>
struct HaloEpilogue {
  const FwdParams* p;
  tiling::FwdJob job;
  const ConvRef* cv;
  T* halo;
  const OutRef* r;
  int m0, n0, k, m_rows;  // rows m < m_rows of the row tile are halo pixels m0 + m
  IK_HD T value(int co, const tiling::Pix& px, AccT<T> acc) const {
    return px.valid && co < cv->cout ? Num<T>::from_acc(activate(acc + bias_at<T>(*cv, co), p->relu)) : zero<T>();
  }
  IK_HD void operator()(int m, int col, AccT<T> acc) const {
    const int hp = m0 + m, co = n0 + col, crp = tiling::pad8(cv->cout);
    if (m >= m_rows || co >= crp) return;
    if (co >= cv->cout) return void(halo[hp * crp + co] = zero<T>());
    const tiling::Pix px = tiling::halo_pixel(hp, job.h0, job.w0, p->tiles, k, p->h, p->w);
    const T v = value(co, px, acc);
    halo[hp * crp + co] = v;
    if (r->p && px.valid && tiling::halo_is_interior(hp, p->tiles, k))
      static_cast<T*>(r->p)[r->offset(job.n, co, px.h, px.w)] = v;
  }
  IK_HD void chunk(int m, int col, const AccT<T>* acc) const {  // one 16-byte store into the halo
    const int hp = m0 + m, co0 = n0 + col, crp = tiling::pad8(cv->cout);
    if (m >= m_rows || co0 >= crp) return;
    const tiling::Pix px = tiling::halo_pixel(hp, job.h0, job.w0, p->tiles, k, p->h, p->w);
    alignas(16) T v[tiling::kChunk];
    IK_UNROLL
    for (int j = 0; j < tiling::kChunk; ++j) v[j] = value(co0 + j, px, acc[j]);
    copy8(halo + hp * crp + co0, v);  // pad8 rows: 16-byte aligned
    if (r->p && px.valid && tiling::halo_is_interior(hp, p->tiles, k))
      store_channels<T>(*r, job.n, co0, tiling::imin(tiling::kChunk, cv->cout - co0), px.h, px.w, v);
  }
};

// The weights of conv c at output channel n0 (with its TMA map where the plan made one).
IK_HD const TmaMap* weight_map(const FwdParams& p, int c) { return p.tma.w_ok[c] ? &p.tma.w[c] : nullptr; }
template <class T>
IK_HD WeightOperand<T> weight_operand(const FwdParams& p, int c, int n0) {
  return WeightOperand<T>{&p.conv[c], n0, weight_map(p, c)};
}

// Stage 2's halo (tiling::FwdStage): the saved reduce outputs r over the tile's halo, zeros
// outside the image and in the pad channels -- what stage 0's reduce GEMM writes there. Chunk
// i = (halo pixel, 8 channels); one 16-byte load where r's channels are contiguous and aligned.
template <class T>
struct HaloFill {
  const FwdParams* p;
  tiling::FwdJob job;
  const OutRef* r;
  T* halo;
  int cr, k;
  IK_HD void operator()(int i) const {
    const int crp = tiling::pad8(cr), per = crp / tiling::kChunk, hp = i / per, c0 = (i % per) * tiling::kChunk;
    const tiling::Pix px = tiling::halo_pixel(hp, job.h0, job.w0, p->tiles, k, p->h, p->w);
    alignas(16) T v[tiling::kChunk];
    if (px.valid)
      load8(static_cast<const T*>(r->p) + r->offset(job.n, c0, px.h, px.w), r->s[1], cr - c0, v);
    else
      zero8(v);
    copy8(halo + hp * crp + c0, v);
  }
};

// One forward job: a tile's KxK branch (its reduce conv into the halo -- or, in stage 2, the
// halo from the saved reduce outputs -- then the KxK conv), or its 1x1 and pool branches (in
// stage 1 with the reduce convs over the tile's pixels, into their saved outputs). `smem` is the
// block's shared memory (the halo at p.halo_offset).
IK_NO_EXEC_CHECK
template <class T, class Core>
IK_HD void run_fwd_job(const FwdParams& p, int64_t job_index, const Core& core, char* smem) {
  using namespace tiling;
  const FwdJob job = decode_fwd_job(job_index, p.tiles, p.stage);
  const BranchOffsets bo = branch_offsets(p.conv[kW1].cout, p.conv[kW3].cout, p.conv[kW5].cout, p.conv[kWp].cout);
  const int cin = p.conv[kW1].cin;
  if (job.kind == kFwdBranch1P) {
    const ConvRef* w1 = &p.conv[kW1];
    const ConvRef* wp = &p.conv[kWp];
    for (int n0 = 0, bn; n0 < w1->cout; n0 += bn) {
      bn = n_tile_width(w1->cout - n0, kMaxBN);
      core.gemm(XOperand<T>{&p, job, XOperand<T>::kTile, 0, 1, kBM, 0}, weight_operand<T>(p, kW1, n0), cin, bn,
                OutputEpilogue<T>{&p, job, w1, n0, bo.o1, nullptr});
    }
    if (p.stage == kFwdStage1)  // the reduce convs over the same x tile (L2 / TMA), once per pixel
      for (int b = 0; b < 2; ++b) {
        const int c = b == 0 ? kW3r : kW5r;
        for (int n0 = 0, bn; n0 < p.conv[c].cout; n0 += bn) {
          bn = n_tile_width(p.conv[c].cout - n0, kMaxBN);
          core.gemm(XOperand<T>{&p, job, XOperand<T>::kTile, 0, 1, kBM, 0}, weight_operand<T>(p, c, n0), cin, bn,
                    OutputEpilogue<T>{&p, job, &p.conv[c], n0, 0, nullptr, &p.r[b]});
        }
      }
    for (int n0 = 0, bn; n0 < wp->cout; n0 += bn) {
      bn = n_tile_width(wp->cout - n0, kMaxBN);
      core.gemm(XOperand<T>{&p, job, XOperand<T>::kTilePool, 0, 1, kBM, -1}, weight_operand<T>(p, kWp, n0), cin, bn,
                OutputEpilogue<T>{&p, job, wp, n0, bo.op, nullptr});
    }
    return;
  }
  const int b = job.kind == kFwdBranch3 ? 0 : 1;
  const int cr_conv = b == 0 ? kW3r : kW5r;
  const ConvRef* wr = &p.conv[cr_conv];
  const ConvRef* wk = &p.conv[b == 0 ? kW3 : kW5];
  const int k = wk->k, cr = wr->cout;
  T* halo = reinterpret_cast<T*>(smem + p.halo_offset);
  const int hp = halo_pixels(p.tiles, k);
  if (p.stage == kFwdStage2)  // the halo from stage 1's outputs (parallel_for ends on a barrier)
    core.parallel_for(hp * (pad8(cr) / kChunk), HaloFill<T>{&p, job, &p.r[b], halo, cr, k});
  for (int m0 = 0; m0 < hp && p.stage != kFwdStage2; m0 += halo_tile_step(p.tiles, k)) {  // row tiles of whole halo lines where they fit
    const int rows = halo_tile_rows(p.tiles, k, m0);
    for (int n0 = 0, bn; n0 < pad8(cr); n0 += bn) {
      bn = n_tile_width(pad8(cr) - n0, kMaxBN);
      core.gemm(XOperand<T>{&p, job, XOperand<T>::kHalo, m0, k, rows, 1 + b}, weight_operand<T>(p, cr_conv, n0), cin,
                bn, HaloEpilogue<T>{&p, job, wr, halo, &p.r[b], m0, n0, k, rows});
    }
  }
  // core.gemm begins with a block-wide barrier: the halo is complete before it is read.
  for (int n0 = 0, bn; n0 < wk->cout; n0 += bn) {
    bn = n_tile_width(wk->cout - n0, kMaxBN);
    core.gemm(HaloOperand<T>{halo, p.tiles, cr, k}, weight_operand<T>(p, b == 0 ? kW3 : kW5, n0), pad8(cr) * k * k, bn,
              OutputEpilogue<T>{&p, job, wk, n0, b == 0 ? bo.o3 : bo.o5, halo});
  }
}

// ---------------------------------------------------------------------------------------
// Backward operands and epilogues
// ---------------------------------------------------------------------------------------

// Where a branch's output-side gradient comes from: the upstream gradient of y's channels
// [off, off + count) masked by ReLU'(y) (from_gy), or the reduce-output gradient buffer gr
// (columns [off, ...)), already masked.
struct GradSource {
  bool from_gy;
  int off;
};

// Row length of the gr buffer [N*H*W, pad8(c3r) + pad8(c5r)] (each branch's columns start on
// a chunk; the pad columns are never read: ReduceGradEpilogue::chunk writes zeros there).
IK_HD int gr_cols(const BwdParams& p) { return tiling::pad8(p.conv[kW3r].cout) + tiling::pad8(p.conv[kW5r].cout); }

IK_HD int64_t flat_index(const BwdParams& p, const tiling::FlatPix& px) {
  return (px.n * p.h + px.h) * static_cast<int64_t>(p.w) + px.w;
}

template <class T>
IK_HD T grad_at(const BwdParams& p, GradSource g, const tiling::FlatPix& px, int c) {
  if (!g.from_gy) return load<T>(p.gr, flat_index(p, px) * gr_cols(p) + g.off + c);
  const T v = load<T>(p.gy.p, p.gy.offset(px.n, g.off + c, px.h, px.w));
  if (p.relu && !(Num<T>::to_acc(load<T>(p.y.p, p.y.offset(px.n, g.off + c, px.h, px.w))) > AccT<T>(0)))
    return zero<T>();
  return v;
}

// The gradient source of each conv's output: y's branch channels, or gr's columns.
IK_HD GradSource grad_source(const BwdParams& p, int conv) {
  switch (conv) {
    case kW1: return GradSource{true, p.bo.o1};
    case kW3: return GradSource{true, p.bo.o3};
    case kW5: return GradSource{true, p.bo.o5};
    case kWp: return GradSource{true, p.bo.op};
    case kW3r: return GradSource{false, 0};
    default: return GradSource{false, tiling::pad8(p.conv[kW3r].cout)};  // kW5r
  }
}

// Channels c0 .. c0 + 7 of a gradient source at pixel px, zero from c0 + count on: a pointer
// into gr (aligned chunks: cp.async), or the masked upstream gradient in v (see `chunk`).
template <class T>
IK_HD const T* grad_chunk(const BwdParams& p, GradSource g, const tiling::FlatPix& px, int c0, int count, T* v,
                          int* valid) {
  if (count <= 0) return zero8(v), nullptr;
  if (!g.from_gy) return *valid = tiling::imin(count, tiling::kChunk), static_cast<const T*>(p.gr) + flat_index(p, px) * gr_cols(p) + g.off + c0;
  load_channels(p.gy, px.n, g.off + c0, count, px.h, px.w, v);
  if (!p.relu) return nullptr;
  T y[tiling::kChunk];
  load_channels(p.y, px.n, g.off + c0, count, px.h, px.w, y);
  for (int j = 0; j < tiling::kChunk; ++j)
    if (!(Num<T>::to_acc(y[j]) > AccT<T>(0))) v[j] = zero<T>();
  return nullptr;
}

// Which pixel GEMM row m stands for: flat pixel m0 + m of the batch (kFlat), or pixel m of a
// spatial tile (kTile), or halo pixel m0 + m of its 1-pixel halo (kHalo3).
struct PixelRow {  // a GEMM row's pixel, and whether there is one
  tiling::FlatPix px;
  bool valid;
};

struct PixelRows {
  enum Mode : int { kFlat, kTile, kHalo3 };
  Mode mode;
  int64_t m0;
  tiling::FwdJob tile;  // image and origin (kTile, kHalo3)
  IK_HD bool at(const BwdParams& p, int m, tiling::FlatPix* px) const {
    if (mode == kFlat) {
      if (m0 + m >= p.n * p.h * static_cast<int64_t>(p.w)) return false;
      *px = tiling::flat_pixel(m0 + m, p.h, p.w);
      return true;
    }
    const tiling::Pix q = mode == kTile ? tiling::tile_pixel(m, tile.h0, tile.w0, p.dx_tiles, p.h, p.w)
                                        : tiling::halo_pixel(static_cast<int>(m0) + m, tile.h0, tile.w0, p.dx_tiles, 3, p.h, p.w);
    *px = tiling::FlatPix{tile.n, q.h, q.w};
    return q.valid;
  }
  IK_HD PixelRow row(const BwdParams& p, int m) const {
    PixelRow r{};
    r.valid = at(p, m, &r.px);
    return r;
  }
};

// A(m, kk) for GEMM rows over pixels (PixelRows): the gradient source at the pixel, channel kk;
// or, for the transposed KxK conv (k > 1), at the pixel that read it at tap
// conv_tap(kk, pad8(count), k), channel tap.c. K-major.
template <class T>
struct PixelGradOperand {
  static constexpr bool kKMajor = true;
  const BwdParams* p;
  GradSource g;
  PixelRows rows;
  int count, k;
  using Row = PixelRow;
  IK_HD Row row(int m) const { return rows.row(*p, m); }
  using Col = tiling::Tap;
  IK_HD Col col(int kk) const { return tiling::conv_tap(kk, tiling::pad8(count), k); }
  IK_HD void advance(Col& tp, int dk) const { tp = tiling::tap_advance(tp, dk, tiling::pad8(count), k); }
  IK_HD const T* chunk_at(const Row& row, const Col& tp, int kvalid, T* v, int* valid) const {
    (void)kvalid;  // kdim = K * K * pad8(count): the channel bound is the tighter one
    if (!row.valid) return zero8(v), nullptr;
    const tiling::Pix q = tiling::conv_reader(row.px.h, row.px.w, tp.dy, tp.dx, k, p->h, p->w);
    if (!q.valid) return zero8(v), nullptr;
    return grad_chunk<T>(*p, g, tiling::FlatPix{row.px.n, q.h, q.w}, tp.c, count - tp.c, v, valid);
  }
  IK_HD const T* chunk(int m, int kk, int kvalid, T* v, int* valid) const {
    return chunk_at(row(m), col(kk), kvalid, v, valid);
  }
};

// B(kk, n) = w[co, n0 + n, dy, dx] with (dy, dx, co) = conv_tap(kk, pad8(cout), k): the
// transposed weights (data gradients). MN-major (a chunk: 8 input channels at one k).
template <class T>
struct TransposedWeightOperand {
  static constexpr bool kKMajor = false;
  const ConvRef* cv;
  int n0;
  using Col = tiling::Tap;  // (dy, dx, co) of kk (a cursor: tap_advance)
  IK_HD Col col(int kk) const { return tiling::conv_tap(kk, tiling::pad8(cv->cout), cv->k); }
  IK_HD void advance(Col& tp, int dk) const { tp = tiling::tap_advance(tp, dk, tiling::pad8(cv->cout), cv->k); }
  IK_HD const T* chunk(int r, int kk, int kvalid, T* v, int* valid) const { return chunk_at(r, col(kk), kvalid, v, valid); }
  IK_HD const T* chunk_at(int r, const Col& tp, int kvalid, T* v, int* valid) const {
    (void)kvalid;
    const int ci = n0 + r, count = cv->cin - ci;
    if (count <= 0 || tp.c >= cv->cout) return zero8(v), nullptr;
    const int64_t off = tp.c * cv->s[0] + ci * cv->s[1] + tp.dy * cv->s[2] + tp.dx * cv->s[3];
    if (cv->vec) return *valid = tiling::imin(count, tiling::kChunk), static_cast<const T*>(cv->w) + off;
    for (int j = 0; j < tiling::kChunk; ++j) v[j] = j < count ? load<T>(cv->w, off + j * cv->s[1]) : zero<T>();
    return nullptr;
  }
};

// The transposed KxK conv at pixel fp, reduce channel c, over the output pixels inside the
// image that read it (the backward's form of kxk_inside_taps).
template <class T>
IK_HD AccT<T> transposed_inside_taps(const BwdParams& p, GradSource g, const ConvRef& cv, const tiling::FlatPix& fp,
                                     int c) {
  AccT<T> s = AccT<T>(0);
  for (int dy = 0; dy < cv.k; ++dy)
    for (int dx = 0; dx < cv.k; ++dx) {
      const tiling::Pix q = tiling::conv_reader(fp.h, fp.w, dy, dx, cv.k, p.h, p.w);
      if (!q.valid) continue;
      for (int co = 0; co < cv.cout; ++co)
        s += Num<T>::to_acc(grad_at<T>(p, g, tiling::FlatPix{fp.n, q.h, q.w}, co)) *
             Num<T>::to_acc(load<T>(cv.w, co * cv.s[0] + c * cv.s[1] + dy * cv.s[2] + dx * cv.s[3]));
    }
  return s;
}

// Launch 1: gr[pixel, off + c] = ReLU'(r) * (transposed KxK conv of the masked upstream gradient).
template <class T>
struct ReduceGradEpilogue {
  const BwdParams* p;
  int b;  // 0: branch 3, 1: branch 5
  int64_t m0;
  int n0;
  IK_HD void operator()(int m, int col, AccT<T> acc) const {
    const int64_t pix = m0 + m;
    const int c = n0 + col, cr = p->conv[b == 0 ? kW3r : kW5r].cout;
    if (pix >= p->n * p->h * static_cast<int64_t>(p->w) || c >= cr) return;
    const tiling::FlatPix fp = tiling::flat_pixel(pix, p->h, p->w);
    const ConvRef& wk = p->conv[b == 0 ? kW3 : kW5];
    if (acc != acc && tiling::near_border(fp.h, fp.w, wk.k, p->h, p->w))  // see kxk_inside_taps
      acc = transposed_inside_taps<T>(*p, grad_source(*p, b == 0 ? kW3 : kW5), wk, fp, c);
    if (p->relu && !(Num<T>::to_acc(load<T>(p->r[b].p, p->r[b].offset(fp.n, c, fp.h, fp.w))) > AccT<T>(0)))
      acc = AccT<T>(0);
    static_cast<T*>(p->gr)[pix * gr_cols(*p) + grad_source(*p, b == 0 ? kW3r : kW5r).off + c] = Num<T>::from_acc(acc);
  }
  // Columns c0 .. c0 + 7 of row m: the pixel once, r's 8 channels in one load where r has aligned
  // chunks (load_channels), one 16-byte store into gr (its rows and branch offsets are whole
  // chunks; the pad columns c >= cr get zeros, never read). A NaN near the border (rare) takes
  // the element path, which recomputes it over the taps inside the image.
  IK_HD void chunk(int m, int col, const AccT<T>* acc) const {
    const int64_t pix = m0 + m;
    const int c0 = n0 + col, cr = p->conv[b == 0 ? kW3r : kW5r].cout;
    if (pix >= p->n * p->h * static_cast<int64_t>(p->w) || c0 >= cr) return;
    const tiling::FlatPix fp = tiling::flat_pixel(pix, p->h, p->w);
    bool nan = false;
    IK_UNROLL
    for (int j = 0; j < tiling::kChunk; ++j) nan = nan || acc[j] != acc[j];
    if (nan && tiling::near_border(fp.h, fp.w, p->conv[b == 0 ? kW3 : kW5].k, p->h, p->w)) {
      IK_NO_UNROLL  // one copy of the recompute in the code
      for (int j = 0; j < tiling::kChunk; ++j) (*this)(m, col + j, acc[j]);
      return;
    }
    const int count = tiling::imin(tiling::kChunk, cr - c0);
    alignas(16) T r[tiling::kChunk];
    if (p->relu) load_channels(p->r[b], fp.n, c0, count, fp.h, fp.w, r);
    alignas(16) T v[tiling::kChunk];
    IK_UNROLL
    for (int j = 0; j < tiling::kChunk; ++j)
      v[j] = j < count && !(p->relu && !(Num<T>::to_acc(r[j]) > AccT<T>(0))) ? Num<T>::from_acc(acc[j]) : zero<T>();
    store8(static_cast<T*>(p->gr) + pix * gr_cols(*p) + grad_source(*p, b == 0 ? kW3r : kW5r).off + c0, 1,
           tiling::kChunk, v);
  }
};

// The dx tile's shared-memory workspace (after the staging area): the pool product Q
// [kDxHalo][kDxBN] over the tile's 1-pixel halo (accumulator type), and the argmax codes
// [kDxHalo][kDxBN] of those halo pixels' pool windows (-1: outside the image).
template <class T>
struct DxWorkspace {
  AccT<T>* q;
  signed char* arg;
  IK_HD static DxWorkspace at(char* base) {
    return DxWorkspace{reinterpret_cast<AccT<T>*>(base),
                       reinterpret_cast<signed char*>(base + tiling::dx_q_bytes(sizeof(AccT<T>)))};
  }
};

// Q[halo pixel m0 + m][col] = (gp @ wp^T): the pool branch's input gradient before routing.
template <class T>
struct DxPoolProductEpilogue {
  const BwdParams* p;
  AccT<T>* q;
  int m0;
  IK_HD void operator()(int m, int col, AccT<T> acc) const {
    if (m0 + m < tiling::halo_pixels(p->dx_tiles, 3)) q[(m0 + m) * tiling::kDxBN + col] = acc;
  }
};

// The three 1x1 convs that read x, as one GEMM over their concatenated output channels (the
// backward's horizontal 1x1 GEMM): dx = [g1 | gr3 | gr5] @ [w1; w3r; w5r]. The reduction index
// runs over pad8(c1), then pad8(c3r), then pad8(c5r) channels (no chunk spans two convs).
struct DxSegments {
  int end[3];  // cumulative ends of the w1, w3r, w5r segments
  IK_HD static int conv(int i) { return i == 0 ? kW1 : i == 1 ? kW3r : kW5r; }
  IK_HD static DxSegments of(const BwdParams& p) {
    DxSegments s;
    int e = 0;
    for (int i = 0; i < 3; ++i) s.end[i] = e += tiling::pad8(p.conv[conv(i)].cout);
    return s;
  }
  IK_HD int find(int k, int* c) const {  // segment of k; *c its channel in the segment
    const int i = k < end[0] ? 0 : k < end[1] ? 1 : 2;
    *c = k - (i == 0 ? 0 : i == 1 ? end[0] : end[1]);  // no dynamic index: end stays in registers
    return i;
  }
};

// A(m, k): the gradient source of segment conv at tile pixel m, channel c. K-major.
template <class T>
struct DxGradOperand {
  static constexpr bool kKMajor = true;
  const BwdParams* p;
  DxSegments seg;
  PixelRows rows;
  using Row = PixelRow;
  IK_HD Row row(int m) const { return rows.row(*p, m); }
  IK_HD const T* chunk_at(const Row& row, int k, int kvalid, T* v, int* valid) const {
    (void)kvalid;
    if (!row.valid) return zero8(v), nullptr;
    int c = 0;
    const int conv = DxSegments::conv(seg.find(k, &c));
    return grad_chunk<T>(*p, grad_source(*p, conv), row.px, c, p->conv[conv].cout - c, v, valid);
  }
  IK_HD const T* chunk(int m, int k, int kvalid, T* v, int* valid) const { return chunk_at(row(m), k, kvalid, v, valid); }
};

// B(k, n) = w[c, ci0 + n] of segment conv (transposed 1x1 weights). MN-major.
template <class T>
struct DxWeightOperand {
  static constexpr bool kKMajor = false;
  const BwdParams* p;
  DxSegments seg;
  int ci0;
  IK_HD const T* chunk(int r, int k, int kvalid, T* v, int* valid) const {
    int c = 0;
    const ConvRef* cv = &p->conv[DxSegments::conv(seg.find(k, &c))];
    return TransposedWeightOperand<T>{cv, ci0}.chunk(r, c, kvalid, v, valid);
  }
};

// dx = acc (the horizontal 1x1 GEMM) + the max-pool backward: for each of the 9 neighbours q of
// the pixel inside the image, Q[q] where q's pool window has its argmax at the pixel.
template <class T>
struct DxEpilogue {
  const BwdParams* p;
  DxWorkspace<T> ws;
  PixelRows rows;  // the tile's pixels
  int ci0;
  IK_HD void operator()(int m, int col, AccT<T> acc) const {
    tiling::FlatPix fp;
    const int ci = ci0 + col;
    if (ci >= p->conv[kW1].cin || !rows.at(*p, m, &fp)) return;
    const tiling::SpatialTiles& t = p->dx_tiles;
    for (int dh = -1; dh <= 1; ++dh)
      for (int dw = -1; dw <= 1; ++dw) {
        if (!tiling::shifted(fp.h, fp.w, dh, dw, p->h, p->w).valid) continue;
        const int hq = tiling::halo_index(m, dh + 1, dw + 1, t, 3);  // q = pixel + (dh, dw)
        if (ws.arg[hq * tiling::kDxBN + col] == tiling::pool_code(fp.h, fp.w, fp.h + dh, fp.w + dw))
          acc += ws.q[hq * tiling::kDxBN + col];
      }
    static_cast<T*>(p->dx.p)[p->dx.offset(fp.n, ci, fp.h, fp.w)] = Num<T>::from_acc(acc);
  }
  // Channels ci0 + col .. + 7 at tile pixel m: the pixel and each neighbour's halo index and code
  // once for the 8 channels (the same additions, in the same order, as the element path), then
  // one 16-byte store where dx has aligned channel chunks (store_channels).
  IK_HD void chunk(int m, int col, const AccT<T>* acc) const {
    tiling::FlatPix fp;
    const int ci = ci0 + col, count = p->conv[kW1].cin - ci;
    if (count <= 0 || !rows.at(*p, m, &fp)) return;
    AccT<T> a[tiling::kChunk];
    IK_UNROLL
    for (int j = 0; j < tiling::kChunk; ++j) a[j] = acc[j];
    const tiling::SpatialTiles& t = p->dx_tiles;
    for (int dh = -1; dh <= 1; ++dh)
      for (int dw = -1; dw <= 1; ++dw) {
        if (!tiling::shifted(fp.h, fp.w, dh, dw, p->h, p->w).valid) continue;
        const int hq = tiling::halo_index(m, dh + 1, dw + 1, t, 3) * tiling::kDxBN + col;  // q = pixel + (dh, dw)
        const int code = tiling::pool_code(fp.h, fp.w, fp.h + dh, fp.w + dw);
        IK_UNROLL
        for (int j = 0; j < tiling::kChunk; ++j)
          if (ws.arg[hq + j] == code) a[j] += ws.q[hq + j];
      }
    alignas(16) T v[tiling::kChunk];
    IK_UNROLL
    for (int j = 0; j < tiling::kChunk; ++j) v[j] = Num<T>::from_acc(a[j]);
    store_channels<T>(p->dx, fp.n, ci, tiling::imin(tiling::kChunk, count), fp.h, fp.w, v);
  }
};

// The argmax codes of the dx tile's halo pixels, chunk i = (halo pixel, 8 channels): one scan of
// each window for 8 channels (pool_scan8), shared by the up to 9 tile pixels it routes to.
template <class T>
struct DxArgmaxPass {
  const BwdParams* p;
  DxWorkspace<T> ws;
  tiling::FwdJob tile;
  int ci0;
  IK_HD void operator()(int i) const {
    constexpr int kChunks = tiling::kDxBN / tiling::kChunk;
    const int hp = i / kChunks, c = (i % kChunks) * tiling::kChunk;
    signed char* arg = ws.arg + hp * tiling::kDxBN + c;
    const tiling::Pix q = tiling::halo_pixel(hp, tile.h0, tile.w0, p->dx_tiles, 3, p->h, p->w);
    const int count = p->conv[kW1].cin - ci0 - c;
    if (!q.valid || count <= 0) {
      for (int j = 0; j < tiling::kChunk; ++j) arg[j] = -1;
      return;
    }
    AccT<T> best[tiling::kChunk];
    int code[tiling::kChunk];
    pool_scan8<T>(p->x, tile.n, ci0 + c, count, q.h, q.w, p->h, p->w, best, code);
    for (int j = 0; j < tiling::kChunk; ++j) arg[j] = static_cast<signed char>(j < count ? code[j] : -1);
  }
};

// Weight/bias gradient operands: A(m, kk) = gradient source at pixel split_start + kk, channel
// co0 + m; B(kk, n) = the conv's input at that pixel shifted to tap (dy, dx), channel ci0 + n
// (x, its max-pool, or a reduce output). A bias gradient is A's row sums (core.reduce_rows).
// Whether the 64 pixels of a weight-gradient stage from `first` are a box: inside the split, or
// past the batch's last pixel (where the map's bounds give the zeros the chunks would); a stage
// that would read the next split's pixels goes by chunks.
IK_HD bool split_stage_is_box(const BwdParams& p, int64_t first, int64_t pix_end) {
  return first + tiling::kTcBK <= pix_end || pix_end == p.n * p.h * static_cast<int64_t>(p.w);
}

template <class T>
struct ChannelGradOperand {  // MN-major: a chunk is 8 output channels at one pixel
  static constexpr bool kKMajor = false;
  const BwdParams* p;
  GradSource g;
  int64_t pix0, pix_end;
  int co0, cout;
  using Col = tiling::PixCursor;  // the pixel of k: pix0 + k (a cursor: pixel_advance)
  IK_HD Col col(int kk) const { return tiling::pix_cursor(pix0 + kk, p->h, p->w); }
  IK_HD void advance(Col& px, int dk) const { px = tiling::pixel_advance(px, dk, p->h, p->w); }
  IK_HD const T* chunk_at(int r, const Col& px, int kvalid, T* v, int* valid) const {
    (void)kvalid;  // kk < kdim = pix_end - pix0
    return grad_chunk<T>(*p, g, tiling::FlatPix{px.n, px.h, px.w}, co0 + r, cout - co0 - r, v, valid);
  }
  IK_HD const T* chunk(int r, int kk, int kvalid, T* v, int* valid) const { return chunk_at(r, col(kk), kvalid, v, valid); }
  // The reduce gradients (gr) as a box of 64 pixels x 64 columns; its columns past cout (the
  // other branch's, or past gr) only reach rows of C the epilogue drops.
  IK_HD TmaTile tma(int k0, int rows) const {
    (void)rows;
    if (g.from_gy || !p->tma.gr_ok || !split_stage_is_box(*p, pix0 + k0, pix_end)) return no_tma();
    return TmaTile{&p->tma.gr, 1, tiling::kTcAtomBytes, 0, 0, {g.off + co0, static_cast<int>(pix0 + k0), 0, 0}};
  }
};

template <class T>
struct InputOperand {  // MN-major: a chunk is 8 input channels at one pixel
  enum Mode : int { kX, kPoolX, kR3, kR5 };
  static constexpr bool kKMajor = false;
  const BwdParams* p;
  Mode mode;
  int64_t pix0, pix_end;
  int ci0, cin, dy, dx, k;
  using Col = tiling::PixCursor;  // the pixel of k: pix0 + k (a cursor: pixel_advance)
  IK_HD Col col(int kk) const { return tiling::pix_cursor(pix0 + kk, p->h, p->w); }
  IK_HD void advance(Col& px, int dk) const { px = tiling::pixel_advance(px, dk, p->h, p->w); }
  IK_HD const T* chunk(int r, int kk, int kvalid, T* v, int* valid) const { return chunk_at(r, col(kk), kvalid, v, valid); }
  IK_HD const T* chunk_at(int r, const Col& fp, int kvalid, T* v, int* valid) const {
    (void)kvalid;  // kk < kdim = pix_end - pix0
    const int c0 = ci0 + r, count = cin - c0;
    if (count <= 0) return zero8(v), nullptr;
    const tiling::Pix q = tiling::conv_source(fp.h, fp.w, dy, dx, k, p->h, p->w);
    if (!q.valid) return zero8(v), nullptr;
    if (mode == kPoolX) return pooled8(p->x, fp.n, c0, count, q.h, q.w, p->h, p->w, v), nullptr;
    const TensorRef& src = mode == kX ? p->x : p->r[mode == kR3 ? 0 : 1];
    if (src.vec) return *valid = tiling::imin(count, tiling::kChunk), static_cast<const T*>(src.p) + src.offset(fp.n, c0, q.h, q.w);
    return load_channels(src, fp.n, c0, count, q.h, q.w, v), nullptr;
  }
  // x of a 1x1 conv as boxes of 64 pixels x 64 channels: one per swizzle atom of the B tile.
  IK_HD TmaTile tma(int k0, int rows) const {
    if (mode != kX || k != 1 || !p->tma.x_ok || !split_stage_is_box(*p, pix0 + k0, pix_end)) return no_tma();
    return TmaTile{&p->tma.x, tiling::cdiv(rows, tiling::kTileLines), tiling::kTcAtomBytes, tiling::kTileLines, 0,
                   {ci0, static_cast<int>(pix0 + k0), 0, 0}};
  }
};

// partial[split, offset + co * s0 + ci * s1 + dy * s2 + dx * s3] = acc (bias: column 0 only).
template <class T>
struct PartialEpilogue {
  const BwdParams* p;
  int64_t base;  // split * P + the gradient's offset
  const int64_t* st;  // dW strides; null for a bias gradient
  int co0, cout, ci0, cin, dy, dx;
  IK_HD void operator()(int m, int col, AccT<T> acc) const {
    const int co = co0 + m, ci = ci0 + col;
    if (co >= cout) return;
    AccT<T>* out = static_cast<AccT<T>*>(p->partial);
    if (st == nullptr) {
      if (col == 0) out[base + co] = acc;
      return;
    }
    if (ci >= cin) return;
    out[base + co * st[0] + ci * st[1] + dy * st[2] + dx * st[3]] = acc;
  }
  // Columns ci0 + col .. + 7 of row m (a weight gradient; a bias gradient comes from
  // core.reduce_rows, element by element): the row's address once, 16-byte stores (two for fp32
  // partials) where the 8 input channels are contiguous in the layout (dW stride 1 along ci: a
  // 1x1 conv's or a channels_last weight's gradient) and 16-byte aligned, else element by
  // element (store8).
  IK_HD void chunk(int m, int col, const AccT<T>* acc) const {
    const int co = co0 + m, ci = ci0 + col;
    if (st == nullptr) {
      if (col == 0) (*this)(m, 0, acc[0]);
      return;
    }
    if (co >= cout || ci >= cin) return;
    alignas(16) AccT<T> v[tiling::kChunk];
    IK_UNROLL
    for (int j = 0; j < tiling::kChunk; ++j) v[j] = acc[j];
    store8(static_cast<AccT<T>*>(p->partial) + base + co * st[0] + ci * st[1] + dy * st[2] + dx * st[3], st[1],
           tiling::imin(tiling::kChunk, cin - ci), v);
  }
};

// Launch 1 job: one (branch, pixel tile, reduce-channel tile) of gr.
IK_NO_EXEC_CHECK
template <class T, class Core>
IK_HD void run_reduce_grad_job(const BwdParams& p, int64_t job, const Core& core) {
  using namespace tiling;
  const int b = job < p.reduce_jobs[0] ? 0 : 1;
  if (b == 1) job -= p.reduce_jobs[0];
  const ConvRef* wk = &p.conv[b == 0 ? kW3 : kW5];
  const int64_t pix_tiles = cdiv64(p.n * p.h * static_cast<int64_t>(p.w), kBM);
  const int64_t m0 = (job % pix_tiles) * kBM;
  const NTile nt = n_tile(wk->cin, static_cast<int>(job / pix_tiles), kMaxBN);
  const PixelRows rows{PixelRows::kFlat, m0, {}};
  core.gemm(PixelGradOperand<T>{&p, grad_source(p, b == 0 ? kW3 : kW5), rows, wk->cout, wk->k},
            TransposedWeightOperand<T>{wk, nt.n0}, pad8(wk->cout) * wk->k * wk->k, nt.bn,
            ReduceGradEpilogue<T>{&p, b, m0, nt.n0});
}

IK_HD int64_t reduce_grad_jobs(int64_t pixels, int cr) {
  return tiling::cdiv64(pixels, tiling::kBM) * tiling::n_tiles(cr, tiling::kMaxBN);
}

// Launch 2 job: a dx tile, a weight-gradient tile or a bias-gradient tile. `dx_ws` is the dx
// tile's workspace (DxWorkspace: shared memory after the staging area).
IK_NO_EXEC_CHECK
template <class T, class Core>
IK_HD void run_grads_job(const BwdParams& p, int64_t job, const Core& core, char* dx_ws) {
  using namespace tiling;
  int64_t local = 0;
  const int seg = find_segment(job, p.seg_end, &local);
  if (seg == kSegDx) {
    // One dx tile: the pool product over the tile's halo first (Q, two GEMM tiles of rows),
    // the argmax codes of the halo's windows, then the horizontal 1x1 GEMM, whose epilogue
    // routes the pool gradient and writes dx.
    const int64_t tiles = p.n * p.dx_tiles.tiles_h * static_cast<int64_t>(p.dx_tiles.tiles_w);
    const FwdJob tile = decode_tile(local % tiles, p.dx_tiles);
    const NTile ct = n_tile(p.conv[kW1].cin, static_cast<int>(local / tiles), kDxBN);
    const int ci0 = ct.n0;
    const DxWorkspace<T> ws = DxWorkspace<T>::at(dx_ws);
    const ConvRef* wp = &p.conv[kWp];
    for (int m0 = 0; m0 < halo_pixels(p.dx_tiles, 3); m0 += kBM)
      core.gemm(PixelGradOperand<T>{&p, grad_source(p, kWp), PixelRows{PixelRows::kHalo3, m0, tile}, wp->cout, 1},
                TransposedWeightOperand<T>{wp, ci0}, wp->cout, ct.bn, DxPoolProductEpilogue<T>{&p, ws.q, m0});
    core.parallel_for(halo_pixels(p.dx_tiles, 3) * (kDxBN / kChunk), DxArgmaxPass<T>{&p, ws, tile, ci0});
    const PixelRows rows{PixelRows::kTile, 0, tile};
    const DxSegments seg = DxSegments::of(p);
    core.gemm(DxGradOperand<T>{&p, seg, rows}, DxWeightOperand<T>{&p, seg, ci0}, seg.end[2], ct.bn,
              DxEpilogue<T>{&p, ws, rows, ci0});
    return;
  }
  if (seg >= kNumSegments) return;
  const bool bias = seg >= kSegB;
  const int conv = bias ? seg - kSegB : seg - kSegW;
  const ConvRef* cv = &p.conv[conv];
  const int k = bias ? 1 : cv->k;
  const WeightJob wj = decode_weight_job(local, cv->cout, bias ? 1 : cv->cin, k);
  const int64_t pixels = p.n * p.h * static_cast<int64_t>(p.w);
  const int64_t pix0 = wj.split * p.split.chunk;
  const int64_t pix_end = pix0 + p.split.chunk < pixels ? pix0 + p.split.chunk : pixels;
  const int64_t base = wj.split * p.p_total + p.grad_offset[bias ? kNumConvs + conv : conv];
  const ChannelGradOperand<T> grad{&p, grad_source(p, conv), pix0, pix_end, wj.co0, cv->cout};
  if (bias) {  // db = the gradient source summed over the split's pixels: a reduction, no GEMM
    core.reduce_rows(grad, static_cast<int>(pix_end - pix0),
                     PartialEpilogue<T>{&p, base, nullptr, wj.co0, cv->cout, 0, 1, 0, 0});
    return;
  }
  using In = InputOperand<T>;
  const typename In::Mode mode = conv == kWp ? In::kPoolX : conv == kW3 ? In::kR3 : conv == kW5 ? In::kR5 : In::kX;
  core.gemm(grad, In{&p, mode, pix0, pix_end, wj.ci0, cv->cin, wj.dy, wj.dx, k}, static_cast<int>(pix_end - pix0), wj.bn,
            PartialEpilogue<T>{&p, base, p.grad_stride[conv], wj.co0, cv->cout, wj.ci0, cv->cin, wj.dy, wj.dx});
}

// Launch 3: grads[i] = sum over splits s (in order) of partial[s, i], in the weights' dtype.
template <class T>
IK_HD void sum_partials(const BwdParams& p, int64_t i) {
  const AccT<T>* part = static_cast<const AccT<T>*>(p.partial);
  AccT<T> acc = 0;
  for (int s = 0; s < p.split.splits; ++s) acc += part[s * p.p_total + i];
  static_cast<T*>(p.grads)[i] = Num<T>::from_acc(acc);
}


// ---------------------------------------------------------------------------------------
// Host-side planning (ops.cpp and the CPU emulator): tiles, grids, gradient layout
// ---------------------------------------------------------------------------------------

namespace plan {

// Whether a 4-D tensor of `elem`-byte elements (sizes, strides) has aligned chunks along dim 1
// (TensorRef::vec, ConvRef::vec): 8 consecutive dim-1 elements contiguous (stride 1) and every
// chunk 16-byte aligned (the base, and the stride of each other dim larger than 1, are multiples
// of 16 bytes). Then the kernels copy operand chunks with cp.async / vector loads.
inline bool chunked(const void* p, const int64_t* sizes, const int64_t* strides, int elem) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0 || (sizes[1] > 1 && strides[1] != 1)) return false;
  for (int d : {0, 2, 3})
    if (sizes[d] > 1 && strides[d] * elem % 16 != 0) return false;
  return true;
}

// p.tiles and p.halo_offset for elements of `elem` bytes (accumulators of `acc_elem`) on a
// device that runs the wgmma build or not (`wgmma`: tiling::wgmma_build, whose forward kernel
// has static shared memory); false when even a 1x1 tile's halo does not fit in `smem_limit`
// bytes. Returns the dynamic shared memory of the forward kernel in *smem.
inline bool forward(FwdParams& p, int elem, int acc_elem, int64_t smem_limit, bool wgmma, int64_t* smem) {
  const ConvRef &w3r = p.conv[kW3r], &w3 = p.conv[kW3], &w5r = p.conv[kW5r], &w5 = p.conv[kW5];
  if (wgmma) smem_limit -= tiling::kTmaStaticSmem;  // the forward kernel's static TMA barriers
  if (!tiling::pick_fwd_tiles(p.h, p.w, w3.k, w3r.cout, w5.k, w5r.cout, elem, acc_elem, smem_limit, &p.tiles))
    return false;
  p.halo_offset = tiling::staging_bytes(elem, acc_elem);
  *smem = tiling::fwd_smem_bytes(p.tiles, w3.k, w3r.cout, w5.k, w5r.cout, elem, acc_elem);
  return true;
}

// The forward's launches, in order (tiling::FwdStage): stage 1 then stage 2 for the two-launch
// schedule (Python's choice, _checks.cuda_two_launch; p.r must then be set, saved outputs or
// workspaces), else the one launch. Returns the count; stages[i] the stage of launch i.
inline int forward_stages(bool two_launch, int* stages) {
  if (two_launch) return stages[0] = tiling::kFwdStage1, stages[1] = tiling::kFwdStage2, 2;
  return stages[0] = tiling::kFwdOneLaunch, 1;
}

// Encodes a TmaSpec into a TmaMap: the driver's cuTensorMapEncodeTiled in ops.cpp, the CPU
// shim's in the emulator. False when it cannot (the operand then goes by chunks).
using TmaEncode = bool (*)(const TmaSpec& spec, TmaMap* map);

// Whether a stride of `elem`-byte elements is one a TMA map takes: a multiple of 16 bytes below 2^40.
inline bool tma_stride_ok(int64_t stride, int elem) {
  return stride > 0 && stride * elem % 16 == 0 && stride * elem < (int64_t{1} << 40);
}

// The forward's TMA maps (p.tma), after plan::forward: on the wgmma build (`wgmma`) and for 16-bit
// elements, x's boxes where x has contiguous channels and 16-byte aligned base and pixel strides
// (channels_last), and each 1x1 conv's weights where its input channels are contiguous and its
// rows 16-byte aligned (docs/design.md §7). Every other operand, and every operand elsewhere,
// keeps the chunk path; so does one whose map `encode` refuses.
inline void forward_tma(FwdParams& p, int elem, bool wgmma, TmaEncode encode) {
  p.tma = FwdTma{};
  if (!wgmma || elem != 2) return;
  const int cin = p.conv[kW1].cin;
  const TensorRef& x = p.x;
  if (x.vec && x.s[1] == 1 && tma_stride_ok(x.s[3], elem) && tma_stride_ok(x.s[2], elem) && tma_stride_ok(x.s[0], elem)) {
    for (int i = 0; i < 3; ++i) {
      const int k = i == 0 ? 1 : p.conv[i == 1 ? kW3 : kW5].k;
      const int lines = i == 0 ? p.tiles.th : tiling::halo_tile_lines(p.tiles, k);
      if (lines == 0) continue;  // flat row tiles: not a box
      const TmaSpec spec{x.p,
                         {static_cast<uint64_t>(cin), static_cast<uint64_t>(p.w), static_cast<uint64_t>(p.h),
                          static_cast<uint64_t>(p.n)},
                         {static_cast<uint64_t>(x.s[3] * elem), static_cast<uint64_t>(x.s[2] * elem),
                          static_cast<uint64_t>(x.s[0] * elem)},
                         {tiling::kLineBytes / 2, static_cast<uint32_t>(i == 0 ? p.tiles.tw : tiling::halo_cols(p.tiles, k)),
                          static_cast<uint32_t>(lines), 1}};
      p.tma.x_ok[i] = encode(spec, &p.tma.x[i]);
    }
  }
  for (int c = 0; c < kNumConvs; ++c) {
    // A weight row is a box line where its reduction index kk = (dy K + dx) pad8(cin) + c is its
    // memory order: input channels contiguous, and for K x K the taps too, channels in whole
    // chunks (channels_last weights, as FusedInception keeps them).
    const ConvRef& cv = p.conv[c];
    const bool taps_contiguous = cv.k == 1 || (cv.cin % tiling::kChunk == 0 && cv.s[3] == cv.cin && cv.s[2] == cv.k * cv.cin);
    if (!cv.vec || cv.s[1] != 1 || !taps_contiguous || !tma_stride_ok(cv.s[0], elem)) continue;
    const uint64_t row = static_cast<uint64_t>(cv.s[0] * elem), all = row * static_cast<uint64_t>(cv.cout);
    if (all >= (uint64_t{1} << 40)) continue;
    const uint64_t kdim = static_cast<uint64_t>(cv.k) * cv.k * cv.cin;
    const TmaSpec spec{cv.w, {kdim, static_cast<uint64_t>(cv.cout), 1, 1}, {row, all, all},
                       {tiling::kLineBytes / 2, tiling::kTmaWeightRows, 1, 1}};
    p.tma.w_ok[c] = encode(spec, &p.tma.w[c]);
  }
}

// The backward's TMA maps (p.tma), once p.x, p.gr and the plan are set: on the wgmma build
// (`wgmma`) and for 16-bit elements, gr always (its rows are 16-byte multiples) and x where its
// channels are contiguous and its pixels evenly spaced at a 16-byte multiple (channels_last).
inline void backward_tma(BwdParams& p, int elem, bool wgmma, TmaEncode encode) {
  p.tma = BwdTma{};
  if (!wgmma || elem != 2) return;
  const uint64_t pixels = static_cast<uint64_t>(p.n) * static_cast<uint64_t>(p.h) * static_cast<uint64_t>(p.w);
  if (pixels == 0) return;
  const uint32_t box[4] = {tiling::kLineBytes / 2, tiling::kTileLines, 1, 1};
  auto spec2d = [&](const void* base, uint64_t cols, uint64_t row_bytes) {
    const uint64_t all = row_bytes * pixels;
    return TmaSpec{base, {cols, pixels, 1, 1}, {row_bytes, all, all}, {box[0], box[1], box[2], box[3]}};
  };
  if (p.gr != nullptr && reinterpret_cast<uintptr_t>(p.gr) % 16 == 0) {
    const uint64_t cols = static_cast<uint64_t>(gr_cols(p));
    p.tma.gr_ok = cols * elem * pixels < (uint64_t{1} << 40) && encode(spec2d(p.gr, cols, cols * elem), &p.tma.gr);
  }
  const TensorRef& x = p.x;
  const int64_t ps = x.s[3];  // one pixel stride for all of N*H*W: w, then h, then n
  const bool even = (p.h == 1 || x.s[2] == ps * p.w) && (p.n == 1 || x.s[0] == ps * p.w * p.h);
  if (x.vec && x.s[1] == 1 && even && tma_stride_ok(ps, elem) && static_cast<uint64_t>(ps * elem) * pixels < (uint64_t{1} << 40))
    p.tma.x_ok = encode(spec2d(x.p, static_cast<uint64_t>(p.conv[kW1].cin), static_cast<uint64_t>(ps * elem)), &p.tma.x);
}

// The flat gradient layout as the backward op receives it from Python (inception_kernels/
// _layout.py GradLayout.as_ints, the one source of the layout): [P, dW offsets (6), db offsets (6),
// dW strides (6 x 4)]; offset -1 for a conv whose gradients are not computed.
constexpr int kGradLayoutInts = 1 + 2 * kNumConvs + 4 * kNumConvs;

// Whether `layout` (kGradLayoutInts values) is one the kernels can write without leaving the
// buffer: P >= 0, a conv's dW and db both present (>= 0) or both absent (-1), strides >= 0, and
// every present gradient inside [0, P) (dW's last element at offset + sum (size - 1) * stride;
// p.conv must be set). A memory guard only (docs/design.md §5): which gradients are needed and
// where they go is Python's decision.
inline bool grad_layout_fits(const BwdParams& p, const int64_t* layout) {
  const int64_t total = layout[0];
  if (total < 0) return false;
  for (int i = 0; i < kNumConvs; ++i) {
    const ConvRef& cv = p.conv[i];
    const int64_t dw = layout[1 + i], db = layout[1 + kNumConvs + i];
    const int64_t* st = layout + 1 + 2 * kNumConvs + 4 * i;
    for (int d = 0; d < 4; ++d)
      if (st[d] < 0) return false;
    if (dw == -1 && db == -1) continue;
    if (dw < 0 || db < 0) return false;
    if (dw >= total || db > total - cv.cout) return false;
    const int64_t sizes[4] = {cv.cout, cv.cin, cv.k, cv.k};
    int64_t last = dw;  // grows by at most total - 1 - last per step: no overflow
    for (int d = 0; d < 4; ++d) {
      if (sizes[d] <= 1) continue;
      if (st[d] > (total - 1 - last) / (sizes[d] - 1)) return false;
      last += (sizes[d] - 1) * st[d];
    }
  }
  return true;
}

// The backward's plan from the gradient layout Python chose (grad_layout_fits(p, layout) must
// hold) and the weight-gradient split rule it passed: grad_offset, grad_stride, p_total, bo, the
// pixel split and both launches' job counts (p.conv, p.n, p.h, p.w must be set). A conv's
// gradients are computed where the layout places them; dx where need_dx.
inline void backward(BwdParams& p, bool need_dx, const int64_t* layout, const tiling::PixelSplitRule& rule) {
  using namespace tiling;
  p.bo = branch_offsets(p.conv[kW1].cout, p.conv[kW3].cout, p.conv[kW5].cout, p.conv[kWp].cout);
  p.p_total = layout[0];
  bool computed[kNumConvs];
  int64_t weight_tiles = 0;
  for (int i = 0; i < kNumConvs; ++i) {
    const ConvRef& cv = p.conv[i];
    p.grad_offset[i] = layout[1 + i];
    p.grad_offset[kNumConvs + i] = layout[1 + kNumConvs + i];
    for (int d = 0; d < 4; ++d) p.grad_stride[i][d] = layout[1 + 2 * kNumConvs + 4 * i + d];
    computed[i] = p.grad_offset[i] >= 0;
    if (computed[i]) weight_tiles += weight_jobs(cv.cout, cv.cin, cv.k, 1) + weight_jobs(cv.cout, 1, 1, 1);
  }
  const int64_t pixels = p.n * p.h * static_cast<int64_t>(p.w);
  p.split = make_pixel_split(pixels, weight_tiles, rule);
  const bool want_gr = need_dx || computed[kW3r] || computed[kW5r];
  p.reduce_jobs[0] = want_gr ? reduce_grad_jobs(pixels, p.conv[kW3r].cout) : 0;
  p.reduce_jobs[1] = want_gr ? reduce_grad_jobs(pixels, p.conv[kW5r].cout) : 0;
  p.dx_tiles = dx_tiles(p.h, p.w);
  int64_t end = need_dx ? p.n * p.dx_tiles.tiles_h * static_cast<int64_t>(p.dx_tiles.tiles_w) * n_tiles(p.conv[kW1].cin, kDxBN) : 0;
  p.seg_end[kSegDx] = end;
  for (int i = 0; i < kNumConvs; ++i) {
    const ConvRef& cv = p.conv[i];
    end += computed[i] ? weight_jobs(cv.cout, cv.cin, cv.k, p.split.splits) : 0;
    p.seg_end[kSegW + i] = end;
  }
  for (int i = 0; i < kNumConvs; ++i) {
    end += computed[i] ? weight_jobs(p.conv[i].cout, 1, 1, p.split.splits) : 0;
    p.seg_end[kSegB + i] = end;
  }
}

}  // namespace plan

}  // namespace inception_kernels
