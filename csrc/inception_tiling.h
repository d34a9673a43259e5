// Index and tiling math of the fused CUDA C++ Inception kernels (docs/design.md §3-4).
//
// Plain C++ with no CUDA, torch or standard-library dependency beyond <cstdint>: every
// function is `__host__ __device__` under nvcc and an ordinary inline function under a host
// compiler, so tests/test_cuda_tiling.py (and the emulator of tests/test_cuda_emulator.py)
// compile this header with g++ and check it on the CPU (no GPU needed). The kernels
// (inception_fused_fwd.cu, inception_fused_bwd.cu) use exactly these functions.
//
// Vocabulary:
//   tile      th x tw output pixels of one image; a forward job works on one tile.
//   halo      the (th + K - 1) x (tw + K - 1) pixels a KxK conv (stride 1, pad K/2) reads
//             around a tile; halo pixel p is row-major in the halo.
//   flat pixel  m over N*H*W (row-major n, h, w); the backward's GEMM rows.
//   GEMM tile  kBM rows (pixels or output channels) x BN columns (n_tile_width), reduced in kBK slices.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define IK_HD __host__ __device__ __forceinline__
// Host+device templates that call a device-only Core: only their device instantiation exists.
#define IK_NO_EXEC_CHECK _Pragma("nv_exec_check_disable")
#define IK_UNROLL _Pragma("unroll")
#define IK_NO_UNROLL _Pragma("unroll 1")
#else
#define IK_HD inline
#define IK_NO_EXEC_CHECK
#define IK_UNROLL
#define IK_NO_UNROLL
#endif

namespace inception_kernels {
namespace tiling {

constexpr int kBM = 64;  // GEMM tile rows
// GEMM tile columns: each product's N tiles are sized to its channels (n_tile_width): 16, 32,
// 64 or 128 wide, so wide layers issue wgmma m64n128k16 / 16 mma.sync per warp and k-step, and
// thin ones (c5r = 16, 24, 32, 48) pay little padding.
constexpr int kMinBN = 16;
constexpr int kMaxBN = 128;
constexpr int kBK = 16;  // one MMA's depth (m16n8k16, wgmma k16); pixel splits are multiples of it
constexpr int kThreads = 128;  // 4 warps (one warpgroup); on sm_80 each a 32 x (BN / 2) quarter of the tile
constexpr int kMaxTilePixels = kBM;  // a forward tile's pixels are one GEMM tile's rows
constexpr int kChunk = 8;  // operand elements per chunk: 16 bytes of a 16-bit type, one cp.async

// Tensor-core path (16-bit elements): a ring of kStages operand stages; each stage holds an A tile
// of 64 rows and a B tile of up to kMaxBN columns, kTcBK deep, as lines of 128 bytes (8 chunks),
// chunk c of line l stored at l * 128 + ((c ^ (l % 8)) * 16) -- the 128-byte swizzle (PTX ISA:
// wgmma's 128B swizzling mode; also what keeps ldmatrix free of bank conflicts). A line is a row
// (K-major operands: 64 or up to 128 lines) or a k (MN-major operands: 64 lines); an MN-major line
// wider than 64 elements continues in a second swizzle atom of 64 lines kTcAtomBytes further on
// (tc_chunk_offset), the layout wgmma reads with LBO = kTcAtomBytes.
constexpr int kStages = 3;
constexpr int kTcBK = 64;
constexpr int kLineBytes = 128;
constexpr int kTileLines = 64;
constexpr int kTcAtomBytes = kTileLines * kLineBytes;  // 64 lines of 128 bytes
constexpr int kTcATileBytes = kTcAtomBytes;            // 64 rows (K-major) or 64 k (MN-major, 64 rows)
constexpr int kTcBTileBytes = kMaxBN * kLineBytes;     // 128 rows, or 64 k x 2 atoms of 64 columns
constexpr int kTcStageBytes = kTcATileBytes + kTcBTileBytes;
// The ring slot of a product bn wide: a narrow product (bn <= 64: one atom of B) packs its
// stages 16 KiB apart instead of 24, so its ring ends at kStages x 16 KiB (the backward's dx
// jobs keep their workspace past it: bwd_dx_offset).
constexpr int tc_slot_bytes(int bn) { return kTcATileBytes + (bn > kTileLines ? kTcBTileBytes : kTcAtomBytes); }
// TMA boxes of a 1x1 conv's weights (sm_90a): 16 output channels (the narrowest N tile) x one
// 128-byte line of input channels; a B tile of bn rows takes bn / 16 of them.
constexpr int kTmaWeightRows = 16;
// Static shared memory of the wgmma build's forward kernel (cuobjdump: 2048 bytes): its kStages
// TMA barriers and the dynamic shared memory's 1024-byte alignment (kept out of the tile plan's
// budget, which is the device's per-block opt-in limit for static plus dynamic).
constexpr int kTmaStaticSmem = 2048;


// Whether a device of compute capability cc (10 * major + minor) runs the wgmma build: the fat
// binary's sm_90a code runs on compute capability 9.0 only, every other device the sm_80 code.
IK_HD bool wgmma_build(int cc) { return cc == 90; }

// SIMT path (fp32 / fp64): one stage of kSimtBK; tiles [kBM][kSimtLdK] (K-major) or
// [kSimtBK][kSimtLdM] (MN-major), padded against bank conflicts; a tile wider than kSimtBN
// columns runs as kSimtBN-wide halves.
constexpr int kSimtBN = 64;
constexpr int kSimtBK = 16;
constexpr int kSimtLdK = kSimtBK + 1;
constexpr int kSimtLdM = kBM + 1;
constexpr int kSimtTileElems = kBM * kSimtLdK > kSimtBK * kSimtLdM ? kBM * kSimtLdK : kSimtBK * kSimtLdM;

IK_HD int cdiv(int a, int b) { return (a + b - 1) / b; }
IK_HD int64_t cdiv64(int64_t a, int64_t b) { return (a + b - 1) / b; }
IK_HD int imin(int a, int b) { return a < b ? a : b; }
IK_HD int imax(int a, int b) { return a > b ? a : b; }

// Channels padded to whole chunks: the (tap, channel) reduction index of a KxK conv steps
// over pad8(C) channels per tap, so that no chunk spans two taps.
IK_HD int pad8(int c) { return (c + kChunk - 1) / kChunk * kChunk; }

// Byte offset of chunk `chunk` of line `line` in a swizzled tensor-core tile (see kStages).
IK_HD int swizzle128(int line, int chunk) { return line * kLineBytes + ((chunk ^ (line & 7)) << 4); }

// Byte offset of chunk `chunk` (any, 0 .. 15) of line `line` in a tensor-core operand tile: chunks
// 8 .. 15 of an MN-major line (columns 64 .. 127) lie in the second swizzle atom.
IK_HD int tc_chunk_offset(int line, int chunk) { return (chunk >> 3) * kTcAtomBytes + swizzle128(line, chunk & 7); }

// ---------------------------------------------------------------------------------------
// N tiles sized to the channels
// ---------------------------------------------------------------------------------------

// Width of the next N tile when `rem` > 0 columns are left, at most max_bn (a power of two,
// kMinBN .. kMaxBN): max_bn while rem >= max_bn; else the smallest power of two >= rem when it
// pads at most a quarter of itself (24 -> 32, 48 -> 64, 96 -> 128), else the largest one below
// rem and the rest in further tiles (80 -> 64 + 16).
IK_HD int n_tile_width(int rem, int max_bn) {
  if (rem >= max_bn) return max_bn;
  int up = kMinBN;
  while (up < rem) up *= 2;
  return up == kMinBN || up - rem <= up / 4 ? up : up / 2;
}

struct NTile {
  int n0, bn;  // first column, width
};

// The N tiles of n columns, in order: their count, and tile i.
IK_HD int n_tiles(int n, int max_bn) {
  int count = 0;
  for (int n0 = 0; n0 < n; n0 += n_tile_width(n - n0, max_bn)) ++count;
  return count;
}

IK_HD NTile n_tile(int n, int i, int max_bn) {
  int n0 = 0;
  for (int j = 0; j < i; ++j) n0 += n_tile_width(n - n0, max_bn);
  return NTile{n0, n_tile_width(n - n0, max_bn)};
}

// ---------------------------------------------------------------------------------------
// Output channels: y = cat([y1, y3, y5, yp], dim=1)
// ---------------------------------------------------------------------------------------

struct BranchOffsets {
  int o1, o3, o5, op, total;  // first channel of each branch in y, and y's channel count
};

IK_HD BranchOffsets branch_offsets(int c1, int c3, int c5, int cp) {
  return BranchOffsets{0, c1, c1 + c3, c1 + c3 + c5, c1 + c3 + c5 + cp};
}

// ---------------------------------------------------------------------------------------
// Forward: jobs = (image, spatial tile, kind)
// ---------------------------------------------------------------------------------------

enum FwdKind : int {
  kFwdBranch3 = 0,   // 1x1 reduce over the halo into shared memory, then the K3 x K3 conv
  kFwdBranch5 = 1,   // the same for the K5 x K5 branch
  kFwdBranch1P = 2,  // the 1x1 conv and the max-pool -> 1x1 projection
};
constexpr int kFwdKinds = 3;

struct SpatialTiles {
  int th, tw;             // tile rows and columns (th * tw <= kMaxTilePixels)
  int tiles_h, tiles_w;   // tiles per image column / row
};

// Tiles of th x tw covering an H x W image (the last row/column of tiles may overhang).
IK_HD SpatialTiles make_tiles(int h, int w, int th, int tw) {
  return SpatialTiles{th, tw, cdiv(h, th), cdiv(w, tw)};
}

// The forward's launches (docs/design.md §4.2). kFwdOneLaunch: every kind of every tile, each
// KxK job computing its reduce conv over the tile's halo (the halo's border pixels again in the
// neighbouring tiles' jobs). Where the reduce outputs are saved (training) the forward runs as
// two launches instead: kFwdStage1, one job per tile, runs every 1x1 conv on x -- w1, w3r, w5r
// over the tile's own pixels, the horizontal 1x1 GEMM -- and the pool branch; kFwdStage2, two
// jobs per tile, each KxK branch from its saved reduce outputs. Every reduce output is then
// computed once.
enum FwdStage : int { kFwdOneLaunch = 0, kFwdStage1 = 1, kFwdStage2 = 2 };

IK_HD int fwd_kinds(int stage) { return stage == kFwdOneLaunch ? kFwdKinds : stage == kFwdStage1 ? 1 : 2; }

IK_HD int64_t num_fwd_jobs(int64_t n, SpatialTiles t, int stage = kFwdOneLaunch) {
  return n * t.tiles_h * t.tiles_w * fwd_kinds(stage);
}

struct FwdJob {
  int64_t n;   // image
  int h0, w0;  // tile origin in the image
  int kind;    // FwdKind
};

// Tile `tile` of the batch (images in order, row-major within an image); kind left 0.
IK_HD FwdJob decode_tile(int64_t tile, SpatialTiles t) {
  FwdJob j;
  j.kind = 0;
  const int64_t per_image = static_cast<int64_t>(t.tiles_h) * t.tiles_w;
  j.n = tile / per_image;
  const int r = static_cast<int>(tile % per_image);
  j.h0 = (r / t.tiles_w) * t.th;
  j.w0 = (r % t.tiles_w) * t.tw;
  return j;
}

// The kinds of one tile are consecutive jobs, so x's tile and halo are read from L2 by the
// second and third while the first brought them in. Stage 1 runs kFwdBranch1P (with the reduce
// convs), stage 2 kFwdBranch3 and kFwdBranch5.
IK_HD FwdJob decode_fwd_job(int64_t job, SpatialTiles t, int stage = kFwdOneLaunch) {
  const int kinds = fwd_kinds(stage);
  FwdJob j = decode_tile(job / kinds, t);
  j.kind = stage == kFwdStage1 ? static_cast<int>(kFwdBranch1P) : static_cast<int>(job % kinds);
  return j;
}

struct Pix {
  int h, w;
  bool valid;  // inside the image (and, for tile pixels, inside the tile)
};

// Tile-local pixel m (row-major in the th x tw tile) -> image coordinates.
IK_HD Pix tile_pixel(int m, int h0, int w0, SpatialTiles t, int height, int width) {
  Pix p;
  p.h = h0 + m / t.tw;
  p.w = w0 + m % t.tw;
  p.valid = m < t.th * t.tw && p.h < height && p.w < width;
  return p;
}

IK_HD int halo_cols(SpatialTiles t, int k) { return t.tw + k - 1; }
IK_HD int halo_pixels(SpatialTiles t, int k) { return (t.th + k - 1) * (t.tw + k - 1); }

// Halo pixel p -> image coordinates; valid when p is in the halo and the pixel in the image
// (outside, the KxK conv reads its zero padding).
IK_HD Pix halo_pixel(int p, int h0, int w0, SpatialTiles t, int k, int height, int width) {
  const int hc = halo_cols(t, k);
  Pix q;
  q.h = h0 - k / 2 + p / hc;
  q.w = w0 - k / 2 + p % hc;
  q.valid = p < halo_pixels(t, k) && q.h >= 0 && q.h < height && q.w >= 0 && q.w < width;
  return q;
}

// The reduce GEMM's row tiles over a halo: whole halo lines, as many as fit in kBM rows, when
// that takes no more row tiles than cutting the flat halo into kBM-row pieces -- then each row
// tile is a box of the image (lines x halo_cols pixels: one TMA box on sm_90a, docs/design.md
// §7). Returns the halo lines per row tile, or 0 for flat kBM-row tiles (e.g. 5x5 over a 7x7
// tile: 11 lines of 11 take 3 tiles of 5 lines, 2 of 64 pixels).
IK_HD int halo_tile_lines(SpatialTiles t, int k) {
  const int hc = halo_cols(t, k), lines = t.th + k - 1, per = kBM / hc;
  if (per == 0 || cdiv(lines, per) > cdiv(halo_pixels(t, k), kBM)) return 0;
  return per;
}

// Halo pixels per reduce row tile (halo_tile_lines lines, or kBM) and the rows of the tile
// starting at halo pixel m0 that are the halo's (the rest of the kBM rows are not computed).
IK_HD int halo_tile_step(SpatialTiles t, int k) {
  const int lines = halo_tile_lines(t, k);
  return lines > 0 ? lines * halo_cols(t, k) : kBM;
}
IK_HD int halo_tile_rows(SpatialTiles t, int k, int m0) { return imin(halo_tile_step(t, k), halo_pixels(t, k) - m0); }

// True when halo pixel p is one of the tile's own pixels (not the border the conv adds).
IK_HD bool halo_is_interior(int p, SpatialTiles t, int k) {
  const int hc = halo_cols(t, k);
  const int r = p / hc - k / 2, c = p % hc - k / 2;
  return p < halo_pixels(t, k) && r >= 0 && r < t.th && c >= 0 && c < t.tw;
}

// Reduction index of a KxK conv whose input has `cin` channels: kk = (dy * K + dx) * cin + c.
// Tap-major, so consecutive kk read consecutive channels of one pixel (contiguous in the
// halo buffer [pixel][channel] and in channels_last tensors). The kernels pass pad8(C) as
// `cin` (channels >= C read as zero).
struct Tap {
  int dy, dx, c;
};

IK_HD Tap conv_tap(int kk, int cin, int k) {
  if (kk < cin) return Tap{0, 0, kk};  // the first tap (every kk of a 1x1 conv): no divide
  const int tap = kk / cin;
  return Tap{tap / k, tap % k, kk % cin};
}

// How far tap (dy, dx) moves in the halo: the halo pixel that tile pixel m reads at tap (dy, dx)
// is the one it reads at tap (0, 0) plus this.
IK_HD int halo_tap(int dy, int dx, SpatialTiles t, int k) { return dy * halo_cols(t, k) + dx; }

// conv_tap(kk + dk, cin, k) from tp = conv_tap(kk, cin, k) without a divide (dk >= 0): the
// channel moves on, and each time it passes cin the tap moves to the next one (row-major). A
// loader steps its K position from stage to stage with it (k moves by a stage's depth).
IK_HD Tap tap_advance(Tap tp, int dk, int cin, int k) {
  tp.c += dk;
  while (tp.c >= cin) {
    tp.c -= cin;
    if (++tp.dx == k) tp.dx = 0, ++tp.dy;
  }
  return tp;
}

// The halo pixel that tile pixel m reads at tap (dy, dx).
IK_HD int halo_index(int m, int dy, int dx, SpatialTiles t, int k) {
  return (m / t.tw) * halo_cols(t, k) + m % t.tw + halo_tap(dy, dx, t, k);
}

// ---------------------------------------------------------------------------------------
// Pixels over the whole batch (backward)
// ---------------------------------------------------------------------------------------

struct FlatPix {
  int64_t n;
  int h, w;
};

IK_HD FlatPix flat_pixel(int64_t m, int height, int width) {
  FlatPix p;
  p.w = static_cast<int>(m % width);
  const int64_t t = m / width;
  p.h = static_cast<int>(t % height);
  p.n = t / height;
  return p;
}

// A pixel of the batch as a cursor (flat_pixel's, in ints: N * H * W is below 2^31, ops.cpp's
// check_pixels), and pix_cursor(m + dk, ...) from px = pix_cursor(m, ...) without a divide
// (dk >= 0): the column moves on, and each time it passes the width the row moves to the next
// one (and the image, past the last row) -- a few steps for the steps it is used for: the
// MN-major loaders of the weight gradients place it once per stage (pix_cursor) and step it
// from chunk to chunk, 8 to 32 pixels (DeviceCore::stage_tile).
struct PixCursor {
  int n, h, w;
};
IK_HD PixCursor pix_cursor(int64_t m, int height, int width) {
  const FlatPix f = flat_pixel(m, height, width);
  return PixCursor{static_cast<int>(f.n), f.h, f.w};
}
IK_HD PixCursor pixel_advance(PixCursor px, int dk, int height, int width) {
  px.w += dk;
  while (px.w >= width) {
    px.w -= width;
    if (++px.h == height) px.h = 0, ++px.n;
  }
  return px;
}

// Pixel (h + dh, w + dw) of the same image, valid when inside it.
IK_HD Pix shifted(int h, int w, int dh, int dw, int height, int width) {
  Pix p{h + dh, w + dw, false};
  p.valid = p.h >= 0 && p.h < height && p.w >= 0 && p.w < width;
  return p;
}

// The output pixel of a KxK conv (stride 1, pad K/2) that read input pixel (h, w) at tap
// (dy, dx): the transposed conv of the backward gathers from it.
IK_HD Pix conv_reader(int h, int w, int dy, int dx, int k, int height, int width) {
  return shifted(h, w, k / 2 - dy, k / 2 - dx, height, width);
}

// The input pixel that output pixel (h, w) reads at tap (dy, dx) (for weight gradients).
IK_HD Pix conv_source(int h, int w, int dy, int dx, int k, int height, int width) {
  return shifted(h, w, dy - k / 2, dx - k / 2, height, width);
}

// True when a KxK window centred on (h, w) reaches outside the image: some of its taps read
// the zero padding (forward), or some of the pixels that read (h, w) lie outside (backward).
IK_HD bool near_border(int h, int w, int k, int height, int width) {
  return h < k / 2 || w < k / 2 || h >= height - k / 2 || w >= width - k / 2;
}

// ---------------------------------------------------------------------------------------
// 3x3 / stride 1 / pad 1 max-pool windows
// ---------------------------------------------------------------------------------------

struct Window {
  int h_lo, h_hi, w_lo, w_hi;  // inclusive bounds, clipped to the image
};

IK_HD Window pool_window(int h, int w, int height, int width) {
  return Window{imax(h - 1, 0), imin(h + 1, height - 1), imax(w - 1, 0), imin(w + 1, width - 1)};
}

// A 3x3 window's maximum as PyTorch's max_pool2d scans it: the first maximum in row-major
// order, where a NaN always replaces the running maximum (so the last NaN wins), starting
// from the window's first in-image pixel (a window of -inf keeps it). `index` is h * width + w
// of that pixel, where max_pool2d's backward routes the window's gradient.
template <class V>
struct PoolMax {
  V value;
  int index;
};

// get(h, w) returns the value (float or double); get.infinity() its +inf.
// One step of that scan: whether v replaces the running maximum.
template <class V>
IK_HD bool pool_takes(V v, V best) {
  return v > best || v != v;
}

// Where the argmax of the window of pixel q lies relative to q, as a code (dh + 1) * 3 + (dw + 1)
// in [0, 9): the dx tiles keep one byte per (pixel, channel) instead of the pixel index.
IK_HD int pool_code(int ah, int aw, int qh, int qw) { return (ah - qh + 1) * 3 + (aw - qw + 1); }

template <class Get>
IK_HD auto pool_max(Window win, int width, const Get& get) -> PoolMax<decltype(get(0, 0))> {
  PoolMax<decltype(get(0, 0))> best{-get.infinity(), win.h_lo * width + win.w_lo};
  for (int h = win.h_lo; h <= win.h_hi; ++h) {
    for (int w = win.w_lo; w <= win.w_hi; ++w) {
      const auto v = get(h, w);
      if (pool_takes(v, best.value)) best = {v, h * width + w};
    }
  }
  return best;
}

template <class Get>
IK_HD int pool_argmax(Window win, int width, const Get& get) {
  return pool_max(win, width, get).index;
}

// ---------------------------------------------------------------------------------------
// Shared memory of the forward kernel and the choice of its tile
// ---------------------------------------------------------------------------------------

constexpr int kSmemAlign = 128;  // also the swizzle's period (8 lines x 16 bytes): tiles are aligned to it

IK_HD int64_t align_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

// Whether elements of `elem` bytes take the tensor-core path (fp16 / bf16).
IK_HD bool tensor_core_elem(int elem) { return elem == 2; }

// Bytes of the GEMM staging area: kStages x (A tile, B tile of kMaxBN columns: kTcStageBytes)
// on the tensor-core path, both builds alike (each multiplies a 128-wide tile in one pass),
// one A and one B SIMT tile otherwise. (The accumulator tile of the epilogue reuses it.)
IK_HD int64_t staging_bytes(int elem, int acc_elem) {
  (void)acc_elem;
  if (tensor_core_elem(elem)) return static_cast<int64_t>(kStages) * kTcStageBytes;
  return align_up(2 * static_cast<int64_t>(kSimtTileElems) * elem, kSmemAlign);
}

// Byte offset of the B tile after the A tile (of stage 0; stage s starts at s * kTcStageBytes).
IK_HD int64_t staging_b_offset(int elem) {
  return tensor_core_elem(elem) ? kTcATileBytes : static_cast<int64_t>(kSimtTileElems) * elem;
}

// The halo buffer [halo pixel][pad8(reduce channels)] of either spatial branch (one job runs one).
IK_HD int64_t halo_bytes(SpatialTiles t, int k3, int cr3, int k5, int cr5, int elem) {
  const int64_t b3 = static_cast<int64_t>(halo_pixels(t, k3)) * pad8(cr3) * elem;
  const int64_t b5 = static_cast<int64_t>(halo_pixels(t, k5)) * pad8(cr5) * elem;
  return align_up(b3 > b5 ? b3 : b5, kSmemAlign);
}

IK_HD int64_t fwd_smem_bytes(SpatialTiles t, int k3, int cr3, int k5, int cr5, int elem, int acc_elem) {
  return staging_bytes(elem, acc_elem) + halo_bytes(t, k3, cr3, k5, cr5, elem);
}

// Candidate tiles, largest first; each is clipped to the image.
constexpr int kNumTileCandidates = 6;
IK_HD int tile_candidate_h(int i) {
  const int c[kNumTileCandidates] = {8, 8, 4, 4, 2, 1};
  return c[i];
}
IK_HD int tile_candidate_w(int i) {
  const int c[kNumTileCandidates] = {8, 4, 4, 2, 2, 1};
  return c[i];
}

// The largest candidate tile whose shared memory fits `smem_limit` bytes; false when even
// a 1x1 tile does not fit (reduce channels too many for this device).
IK_HD bool pick_fwd_tiles(int height, int width, int k3, int cr3, int k5, int cr5, int elem, int acc_elem,
                          int64_t smem_limit, SpatialTiles* out) {
  for (int i = 0; i < kNumTileCandidates; ++i) {
    const int th = imin(tile_candidate_h(i), height), tw = imin(tile_candidate_w(i), width);
    const SpatialTiles t = make_tiles(height, width, th, tw);
    if (fwd_smem_bytes(t, k3, cr3, k5, cr5, elem, acc_elem) <= smem_limit) {
      *out = t;
      return true;
    }
  }
  return false;
}

// The dx tiles of the backward: kDxTile x kDxTile pixels of one image (clipped to it) times at
// most kDxBN input channels, whose 3x3 max-pool gradient is routed from the pool product Q over
// the tile's 1-pixel halo (Q and the argmax codes take kDxHalo x kDxBN entries of shared memory,
// which is why these tiles stay 64 wide).
constexpr int kDxTile = 8;
constexpr int kDxHalo = (kDxTile + 2) * (kDxTile + 2);
constexpr int kDxBN = 64;

IK_HD SpatialTiles dx_tiles(int height, int width) {
  return make_tiles(height, width, imin(kDxTile, height), imin(kDxTile, width));
}

// The dx tile's workspace: the pool product Q [kDxHalo][kDxBN] (accumulator type) and the pool
// windows' argmax codes [kDxHalo][kDxBN] (one byte each), at bwd_dx_offset.
IK_HD int64_t dx_q_bytes(int acc_elem) { return align_up(static_cast<int64_t>(kDxHalo) * kDxBN * acc_elem, kSmemAlign); }
IK_HD int64_t dx_arg_bytes() { return align_up(static_cast<int64_t>(kDxHalo) * kDxBN, kSmemAlign); }

// Where the dx workspace starts in the grads kernel's shared memory: past the ring of the dx
// jobs' products, which are at most kDxBN wide (tc_slot_bytes: 3 x 16 KiB on the tensor-core
// path: the grads kernel runs DeviceCore<T, true>, two widths; the weight-gradient jobs'
// 128-wide rings run over it, but they have no workspace), or past the SIMT tiles. That keeps
// the kernel at 79.25 KiB for 16-bit elements: two blocks per A100 SM, and within the 99 KiB a
// block may have on sm_86 / sm_89.
static_assert(kDxBN <= kTileLines, "the dx jobs' products run narrow rings (tc_slot_bytes)");
IK_HD int64_t bwd_dx_offset(int elem, int acc_elem) {
  if (tensor_core_elem(elem)) return static_cast<int64_t>(kStages) * tc_slot_bytes(kDxBN);
  return staging_bytes(elem, acc_elem);
}

// Shared memory of the backward grads kernel: the staging area, or the dx jobs' ring and
// workspace, whichever ends later.
IK_HD int64_t bwd_smem_bytes(int elem, int acc_elem) {
  const int64_t dx_end = bwd_dx_offset(elem, acc_elem) + dx_q_bytes(acc_elem) + dx_arg_bytes();
  const int64_t staging = staging_bytes(elem, acc_elem);
  return staging > dx_end ? staging : dx_end;
}

// ---------------------------------------------------------------------------------------
// Backward: the jobs of the gradient launch
// ---------------------------------------------------------------------------------------

// Segments of the gradient launch's grid, in order: dx tiles, then the weight-gradient jobs
// of w1, w3r, w3, w5r, w5, wp, then the bias-gradient jobs of b1 ... bp.
enum BwdSegment : int { kSegDx = 0, kSegW = 1, kSegB = 7, kNumSegments = 13 };

// Pixel splits of the weight gradients: each split sums its own pixel range into its own
// slice of the fp32 partial buffer [S, P]; the third launch adds the S slices in order.
struct PixelSplit {
  int64_t chunk;  // pixels per split (a multiple of kBK)
  int splits;     // S (0 when there are no pixels)
};

// The weight-gradient split rule, received from Python (inception_kernels/_layout.py
// WGRAD_SPLIT, the one source of its numbers; the ops check that each is positive).
struct PixelSplitRule {
  int64_t target_jobs;  // weight jobs to aim at in all
  int64_t min_pixels;   // fewest pixels per split
  int64_t max_splits;   // most splits (the partial buffer is S x P)
};

// _layout.pixel_split with step kBK: about rule.target_jobs weight jobs in all (weight_tiles per
// split), at most cdiv(pixels, rule.min_pixels) and rule.max_splits splits, at least one; then
// the pixels per split rounded up to kBK. tests/test_cuda_tiling.py checks the two agree.
IK_HD PixelSplit make_pixel_split(int64_t pixels, int64_t weight_tiles, const PixelSplitRule& rule) {
  int64_t s = weight_tiles > 0 ? cdiv64(rule.target_jobs, weight_tiles) : 1;
  const int64_t by_pixels = cdiv64(pixels, rule.min_pixels);
  if (s > by_pixels) s = by_pixels;
  if (s > rule.max_splits) s = rule.max_splits;
  if (s < 1) s = 1;
  int64_t chunk = align_up(cdiv64(pixels, s), kBK);
  if (chunk < kBK) chunk = kBK;
  PixelSplit p;
  p.chunk = chunk;
  p.splits = static_cast<int>(cdiv64(pixels, chunk));
  return p;
}

// Which segment job `job` is in, given the cumulative ends of the segments; *local is the
// job's index inside its segment.
IK_HD int find_segment(int64_t job, const int64_t* seg_end, int64_t* local) {
  int64_t start = 0;
  for (int s = 0; s < kNumSegments; ++s) {
    if (job < seg_end[s]) {
      *local = job - start;
      return s;
    }
    start = seg_end[s];
  }
  *local = 0;
  return kNumSegments;  // past the grid (not launched)
}

// A weight-gradient job: GEMM rows = output channels, columns = input channels (N tiles sized
// by n_tile), reduction over the pixels of one split; for KxK weights one tap per job.
struct WeightJob {
  int co0, ci0;  // first output / input channel of the tile
  int bn;        // input channels of the tile (its GEMM width)
  int dy, dx;    // tap
  int split;     // pixel split
};

IK_HD int64_t weight_jobs(int cout, int cin, int k, int splits) {
  return static_cast<int64_t>(cdiv(cout, kBM)) * n_tiles(cin, kMaxBN) * k * k * splits;
}

IK_HD WeightJob decode_weight_job(int64_t local, int cout, int cin, int k) {
  WeightJob j;
  const int co_tiles = cdiv(cout, kBM), ci_tiles = n_tiles(cin, kMaxBN);
  j.co0 = static_cast<int>(local % co_tiles) * kBM;
  local /= co_tiles;
  const NTile ct = n_tile(cin, static_cast<int>(local % ci_tiles), kMaxBN);
  j.ci0 = ct.n0, j.bn = ct.bn;
  local /= ci_tiles;
  const int tap = static_cast<int>(local % (k * k));
  j.dy = tap / k;
  j.dx = tap % k;
  j.split = static_cast<int>(local / (k * k));
  return j;
}

}  // namespace tiling
}  // namespace inception_kernels
