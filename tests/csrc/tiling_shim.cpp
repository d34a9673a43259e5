// ctypes shim over csrc/inception_tiling.h, the index and tiling math of the CUDA C++ kernels.
//
// Compiled by tests/test_cuda_tiling.py with the host compiler (no CUDA toolkit needed), so
// the same functions the kernels call are checked on the CPU against independent Python and
// PyTorch computations. Every entry point is extern "C" over ints, int64s and out-pointers:
//   a SpatialTiles travels as int[4] {th, tw, tiles_h, tiles_w},
//   a Pix as int[3] {h, w, valid}, a Window as int[4] {h_lo, h_hi, w_lo, w_hi}.

#include <cstdint>
#include <limits>

#include "../../csrc/inception_tiling.h"

namespace tl = inception_kernels::tiling;

namespace {

tl::SpatialTiles tiles_in(const int* t) { return tl::SpatialTiles{t[0], t[1], t[2], t[3]}; }

void tiles_out(const tl::SpatialTiles& t, int* out) {
  out[0] = t.th;
  out[1] = t.tw;
  out[2] = t.tiles_h;
  out[3] = t.tiles_w;
}

void pix_out(const tl::Pix& p, int* out) {
  out[0] = p.h;
  out[1] = p.w;
  out[2] = p.valid ? 1 : 0;
}

// Values of a row-major [H, W] array, as pool_argmax reads them.
template <class T>
struct ArrayGet {
  const T* data;
  int width;
  T operator()(int h, int w) const { return data[static_cast<int64_t>(h) * width + w]; }
  T infinity() const { return std::numeric_limits<T>::infinity(); }
};

}  // namespace

extern "C" {

// {kBM, kMinBN, kMaxBN, kBK, kThreads, kMaxTilePixels, kFwdKinds, kSmemAlign, kNumTileCandidates,
//  kNumSegments, kSegDx, kSegW, kSegB, kChunk, kStages, kTcBK, kLineBytes, kTileLines,
//  kTcAtomBytes, kTcATileBytes, kTcBTileBytes, kTcStageBytes, kSimtBN, kSimtBK, kSimtLdK, kSimtLdM,
//  kSimtTileElems, kDxTile, kDxHalo, kDxBN}
void ik_constants(int* out) {
  const int c[] = {tl::kBM,           tl::kMinBN,      tl::kMaxBN,     tl::kBK,        tl::kThreads,
                   tl::kMaxTilePixels, tl::kFwdKinds,  tl::kSmemAlign, tl::kNumTileCandidates,
                   tl::kNumSegments,  tl::kSegDx,      tl::kSegW,      tl::kSegB,      tl::kChunk,
                   tl::kStages,       tl::kTcBK,       tl::kLineBytes, tl::kTileLines, tl::kTcAtomBytes,
                   tl::kTcATileBytes, tl::kTcBTileBytes, tl::kTcStageBytes, tl::kSimtBN, tl::kSimtBK,
                   tl::kSimtLdK,      tl::kSimtLdM,    tl::kSimtTileElems, tl::kDxTile, tl::kDxHalo,
                   tl::kDxBN};
  for (int i = 0; i < static_cast<int>(sizeof(c) / sizeof(c[0])); ++i) out[i] = c[i];
}

int ik_pad8(int c) { return tl::pad8(c); }
int ik_swizzle128(int line, int chunk) { return tl::swizzle128(line, chunk); }
int ik_tc_chunk_offset(int line, int chunk) { return tl::tc_chunk_offset(line, chunk); }

int ik_n_tile_width(int rem, int max_bn) { return tl::n_tile_width(rem, max_bn); }
int ik_n_tiles(int n, int max_bn) { return tl::n_tiles(n, max_bn); }

// out: {n0, bn}
void ik_n_tile(int n, int i, int max_bn, int* out) {
  const tl::NTile t = tl::n_tile(n, i, max_bn);
  out[0] = t.n0;
  out[1] = t.bn;
}

void ik_branch_offsets(int c1, int c3, int c5, int cp, int* out) {
  const tl::BranchOffsets b = tl::branch_offsets(c1, c3, c5, cp);
  out[0] = b.o1;
  out[1] = b.o3;
  out[2] = b.o5;
  out[3] = b.op;
  out[4] = b.total;
}

void ik_make_tiles(int h, int w, int th, int tw, int* out) { tiles_out(tl::make_tiles(h, w, th, tw), out); }

int64_t ik_num_fwd_jobs(int64_t n, const int* t) { return tl::num_fwd_jobs(n, tiles_in(t)); }

// out: {h0, w0, kind}
void ik_decode_fwd_job(int64_t job, const int* t, int64_t* n, int* out) {
  const tl::FwdJob j = tl::decode_fwd_job(job, tiles_in(t));
  *n = j.n;
  out[0] = j.h0;
  out[1] = j.w0;
  out[2] = j.kind;
}

void ik_tile_pixel(int m, int h0, int w0, const int* t, int height, int width, int* out) {
  pix_out(tl::tile_pixel(m, h0, w0, tiles_in(t), height, width), out);
}

int ik_halo_cols(const int* t, int k) { return tl::halo_cols(tiles_in(t), k); }
int ik_halo_pixels(const int* t, int k) { return tl::halo_pixels(tiles_in(t), k); }

void ik_halo_pixel(int p, int h0, int w0, const int* t, int k, int height, int width, int* out) {
  pix_out(tl::halo_pixel(p, h0, w0, tiles_in(t), k, height, width), out);
}

int ik_halo_tile_lines(const int* t, int k) { return tl::halo_tile_lines(tiles_in(t), k); }
int ik_halo_tile_rows(const int* t, int k, int m0) { return tl::halo_tile_rows(tiles_in(t), k, m0); }
int ik_halo_tile_step(const int* t, int k) { return tl::halo_tile_step(tiles_in(t), k); }
int ik_halo_is_interior(int p, const int* t, int k) { return tl::halo_is_interior(p, tiles_in(t), k) ? 1 : 0; }

// out: {dy, dx, c}
void ik_conv_tap(int kk, int cin, int k, int* out) {
  const tl::Tap tap = tl::conv_tap(kk, cin, k);
  out[0] = tap.dy;
  out[1] = tap.dx;
  out[2] = tap.c;
}

// out: {dy, dx, c} of tap_advance(tap (dy, dx, c), dk, cin, k)
void ik_tap_advance(int dy, int dx, int c, int dk, int cin, int k, int* out) {
  const tl::Tap tap = tl::tap_advance(tl::Tap{dy, dx, c}, dk, cin, k);
  out[0] = tap.dy;
  out[1] = tap.dx;
  out[2] = tap.c;
}

int ik_halo_index(int m, int dy, int dx, const int* t, int k) { return tl::halo_index(m, dy, dx, tiles_in(t), k); }

// out: {h, w}
void ik_flat_pixel(int64_t m, int height, int width, int64_t* n, int* out) {
  const tl::FlatPix p = tl::flat_pixel(m, height, width);
  *n = p.n;
  out[0] = p.h;
  out[1] = p.w;
}

void ik_pix_cursor(int64_t m, int height, int width, int* out) {
  const tl::PixCursor p = tl::pix_cursor(m, height, width);
  out[0] = p.n, out[1] = p.h, out[2] = p.w;
}

void ik_pixel_advance(int n, int h, int w, int dk, int height, int width, int* out) {
  const tl::PixCursor p = tl::pixel_advance(tl::PixCursor{n, h, w}, dk, height, width);
  out[0] = p.n, out[1] = p.h, out[2] = p.w;
}

void ik_shifted(int h, int w, int dh, int dw, int height, int width, int* out) {
  pix_out(tl::shifted(h, w, dh, dw, height, width), out);
}

void ik_conv_reader(int h, int w, int dy, int dx, int k, int height, int width, int* out) {
  pix_out(tl::conv_reader(h, w, dy, dx, k, height, width), out);
}

void ik_conv_source(int h, int w, int dy, int dx, int k, int height, int width, int* out) {
  pix_out(tl::conv_source(h, w, dy, dx, k, height, width), out);
}

void ik_pool_window(int h, int w, int height, int width, int* out) {
  const tl::Window win = tl::pool_window(h, w, height, width);
  out[0] = win.h_lo;
  out[1] = win.h_hi;
  out[2] = win.w_lo;
  out[3] = win.w_hi;
}

// pool_argmax over the window {h_lo, h_hi, w_lo, w_hi} of a row-major [H, W] array.
int ik_pool_argmax_f32(const float* x, int width, const int* win) {
  return tl::pool_argmax(tl::Window{win[0], win[1], win[2], win[3]}, width, ArrayGet<float>{x, width});
}

int ik_pool_argmax_f64(const double* x, int width, const int* win) {
  return tl::pool_argmax(tl::Window{win[0], win[1], win[2], win[3]}, width, ArrayGet<double>{x, width});
}

int64_t ik_staging_bytes(int elem, int acc_elem) { return tl::staging_bytes(elem, acc_elem); }
int ik_tc_slot_bytes(int bn) { return tl::tc_slot_bytes(bn); }
int64_t ik_bwd_dx_offset(int elem, int acc_elem) { return tl::bwd_dx_offset(elem, acc_elem); }
int ik_wgmma_build(int cc) { return tl::wgmma_build(cc); }
int64_t ik_staging_b_offset(int elem) { return tl::staging_b_offset(elem); }

int64_t ik_halo_bytes(const int* t, int k3, int cr3, int k5, int cr5, int elem) {
  return tl::halo_bytes(tiles_in(t), k3, cr3, k5, cr5, elem);
}

int64_t ik_fwd_smem_bytes(const int* t, int k3, int cr3, int k5, int cr5, int elem, int acc_elem) {
  return tl::fwd_smem_bytes(tiles_in(t), k3, cr3, k5, cr5, elem, acc_elem);
}

// out: {th, tw} of candidate i
void ik_tile_candidate(int i, int* out) {
  out[0] = tl::tile_candidate_h(i);
  out[1] = tl::tile_candidate_w(i);
}

// Returns 1 and the tiles in out when a candidate fits, else 0 (out untouched).
int ik_pick_fwd_tiles(int height, int width, int k3, int cr3, int k5, int cr5, int elem, int acc_elem,
                      int64_t smem_limit, int* out) {
  tl::SpatialTiles t{};
  if (!tl::pick_fwd_tiles(height, width, k3, cr3, k5, cr5, elem, acc_elem, smem_limit, &t)) return 0;
  tiles_out(t, out);
  return 1;
}

int64_t ik_bwd_smem_bytes(int elem, int acc_elem) { return tl::bwd_smem_bytes(elem, acc_elem); }

// rule: {target_jobs, min_pixels, max_splits} (a tl::PixelSplitRule).
void ik_make_pixel_split(int64_t pixels, int64_t weight_tiles, const int64_t* rule, int64_t* chunk, int* splits) {
  const tl::PixelSplit s = tl::make_pixel_split(pixels, weight_tiles, tl::PixelSplitRule{rule[0], rule[1], rule[2]});
  *chunk = s.chunk;
  *splits = s.splits;
}

// seg_end: kNumSegments cumulative ends.
int ik_find_segment(int64_t job, const int64_t* seg_end, int64_t* local) {
  return tl::find_segment(job, seg_end, local);
}

int64_t ik_weight_jobs(int cout, int cin, int k, int splits) { return tl::weight_jobs(cout, cin, k, splits); }

// out: {co0, ci0, bn, dy, dx, split}
void ik_decode_weight_job(int64_t local, int cout, int cin, int k, int* out) {
  const tl::WeightJob j = tl::decode_weight_job(local, cout, cin, k);
  out[0] = j.co0;
  out[1] = j.ci0;
  out[2] = j.bn;
  out[3] = j.dy;
  out[4] = j.dx;
  out[5] = j.split;
}

}  // extern "C"
