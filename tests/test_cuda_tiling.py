"""The index and tiling math of the CUDA C++ kernels, on the CPU.

``csrc/inception_tiling.h`` holds every index computation of the fused CUDA kernels (tile ->
image/row/col, halo coordinates, conv taps, channel offsets of the branches, max-pool windows
and their argmax, shared-memory sizes, job decoding of the forward and backward grids) as
``__host__ __device__`` functions. ``tests/csrc/tiling_shim.cpp`` wraps them in ``extern "C"``
entry points; this module compiles it with the host C++ compiler (no CUDA toolkit or GPU
needed) and checks each function against an independent Python computation or, where the
math *is* a convolution or a pool, against PyTorch's own ``conv2d`` / ``max_pool2d``.
"""

import bisect
import ctypes
import itertools
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from inception_kernels import GOOGLENET_INCEPTIONS, reference
from inception_kernels import testing  # the layout contracts (defined in inception_kernels/_layout.py)

ROOT = Path(__file__).resolve().parents[1]
SMEM_H100 = 227 * 1024  # cudaDevAttrMaxSharedMemoryPerBlockOptin of an H100
SMEM_A100 = 163 * 1024  # ... of an A100
_CONSTANT_NAMES = ("kBM", "kMinBN", "kMaxBN", "kBK", "kThreads", "kMaxTilePixels", "kFwdKinds", "kSmemAlign",
                   "kNumTileCandidates", "kNumSegments", "kSegDx", "kSegW", "kSegB", "kChunk", "kStages", "kTcBK",
                   "kLineBytes", "kTileLines", "kTcAtomBytes", "kTcATileBytes", "kTcBTileBytes", "kTcStageBytes",
                   "kSimtBN", "kSimtBK", "kSimtLdK", "kSimtLdM", "kSimtTileElems", "kDxTile", "kDxHalo", "kDxBN")

_i = ctypes.c_int
_i64 = ctypes.c_int64
_p = ctypes.c_void_p
_SIGNATURES = {  # name: (restype, argtypes)
    "ik_constants": (None, [_p]),
    "ik_pad8": (_i, [_i]),
    "ik_swizzle128": (_i, [_i, _i]),
    "ik_tc_chunk_offset": (_i, [_i, _i]),
    "ik_n_tile_width": (_i, [_i, _i]),
    "ik_n_tiles": (_i, [_i, _i]),
    "ik_n_tile": (None, [_i, _i, _i, _p]),
    "ik_branch_offsets": (None, [_i, _i, _i, _i, _p]),
    "ik_make_tiles": (None, [_i, _i, _i, _i, _p]),
    "ik_num_fwd_jobs": (_i64, [_i64, _p]),
    "ik_decode_fwd_job": (None, [_i64, _p, _p, _p]),
    "ik_tile_pixel": (None, [_i, _i, _i, _p, _i, _i, _p]),
    "ik_halo_cols": (_i, [_p, _i]),
    "ik_halo_pixels": (_i, [_p, _i]),
    "ik_halo_pixel": (None, [_i, _i, _i, _p, _i, _i, _i, _p]),
    "ik_halo_is_interior": (_i, [_i, _p, _i]),
    "ik_halo_tile_lines": (_i, [_p, _i]),
    "ik_halo_tile_step": (_i, [_p, _i]),
    "ik_halo_tile_rows": (_i, [_p, _i, _i]),
    "ik_conv_tap": (None, [_i, _i, _i, _p]),
    "ik_tap_advance": (None, [_i, _i, _i, _i, _i, _i, _p]),
    "ik_halo_index": (_i, [_i, _i, _i, _p, _i]),
    "ik_flat_pixel": (None, [_i64, _i, _i, _p, _p]),
    "ik_pix_cursor": (None, [_i64, _i, _i, _p]),
    "ik_pixel_advance": (None, [_i, _i, _i, _i, _i, _i, _p]),
    "ik_shifted": (None, [_i, _i, _i, _i, _i, _i, _p]),
    "ik_conv_reader": (None, [_i, _i, _i, _i, _i, _i, _i, _p]),
    "ik_conv_source": (None, [_i, _i, _i, _i, _i, _i, _i, _p]),
    "ik_pool_window": (None, [_i, _i, _i, _i, _p]),
    "ik_pool_argmax_f32": (_i, [_p, _i, _p]),
    "ik_pool_argmax_f64": (_i, [_p, _i, _p]),
    "ik_staging_bytes": (_i64, [_i, _i]),
    "ik_tc_slot_bytes": (_i, [_i]),
    "ik_bwd_dx_offset": (_i64, [_i, _i]),
    "ik_wgmma_build": (_i, [_i]),
    "ik_staging_b_offset": (_i64, [_i]),
    "ik_halo_bytes": (_i64, [_p, _i, _i, _i, _i, _i]),
    "ik_fwd_smem_bytes": (_i64, [_p, _i, _i, _i, _i, _i, _i]),
    "ik_tile_candidate": (None, [_i, _p]),
    "ik_pick_fwd_tiles": (_i, [_i, _i, _i, _i, _i, _i, _i, _i, _i64, _p]),
    "ik_bwd_smem_bytes": (_i64, [_i, _i]),
    "ik_make_pixel_split": (None, [_i64, _i64, _p, _p, _p]),
    "ik_find_segment": (_i, [_i64, _p, _p]),
    "ik_weight_jobs": (_i64, [_i, _i, _i, _i]),
    "ik_decode_weight_job": (None, [_i64, _i, _i, _i, _p]),
}


class _Tiling:
    """Python face of the shim: SpatialTiles are tuples (th, tw, tiles_h, tiles_w), a Pix is
    (h, w, valid), a Window (h_lo, h_hi, w_lo, w_hi)."""

    def __init__(self, lib: ctypes.CDLL):
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        self.lib = lib
        out = (_i * len(_CONSTANT_NAMES))()
        lib.ik_constants(out)
        self.c = dict(zip(_CONSTANT_NAMES, out))

    @staticmethod
    def _t(t):
        return (_i * 4)(*t)

    def _ints(self, fn, n, *args):
        out = (_i * n)()
        fn(*args, out)
        return tuple(out)

    def _pix(self, fn, *args):
        h, w, valid = self._ints(fn, 3, *args)
        return h, w, bool(valid)

    def branch_offsets(self, c1, c3, c5, cp):
        return self._ints(self.lib.ik_branch_offsets, 5, c1, c3, c5, cp)

    def make_tiles(self, h, w, th, tw):
        return self._ints(self.lib.ik_make_tiles, 4, h, w, th, tw)

    def num_fwd_jobs(self, n, t):
        return self.lib.ik_num_fwd_jobs(n, self._t(t))

    def decode_fwd_job(self, job, t):
        n, out = _i64(), (_i * 3)()
        self.lib.ik_decode_fwd_job(job, self._t(t), ctypes.byref(n), out)
        return (n.value, *out)  # (n, h0, w0, kind)

    def tile_pixel(self, m, h0, w0, t, height, width):
        return self._pix(self.lib.ik_tile_pixel, m, h0, w0, self._t(t), height, width)

    def halo_cols(self, t, k):
        return self.lib.ik_halo_cols(self._t(t), k)

    def halo_pixels(self, t, k):
        return self.lib.ik_halo_pixels(self._t(t), k)

    def halo_pixel(self, p, h0, w0, t, k, height, width):
        return self._pix(self.lib.ik_halo_pixel, p, h0, w0, self._t(t), k, height, width)

    def halo_is_interior(self, p, t, k):
        return bool(self.lib.ik_halo_is_interior(p, self._t(t), k))

    def conv_tap(self, kk, cin, k):
        return self._ints(self.lib.ik_conv_tap, 3, kk, cin, k)  # (dy, dx, c)

    def tap_advance(self, tap, dk, cin, k):
        return self._ints(self.lib.ik_tap_advance, 3, *tap, dk, cin, k)  # (dy, dx, c)

    def halo_index(self, m, dy, dx, t, k):
        return self.lib.ik_halo_index(m, dy, dx, self._t(t), k)

    def flat_pixel(self, m, height, width):
        n, out = _i64(), (_i * 2)()
        self.lib.ik_flat_pixel(m, height, width, ctypes.byref(n), out)
        return (n.value, *out)  # (n, h, w)

    def pix_cursor(self, m, height, width):
        return self._ints(self.lib.ik_pix_cursor, 3, m, height, width)  # (n, h, w)

    def pixel_advance(self, px, dk, height, width):
        return self._ints(self.lib.ik_pixel_advance, 3, *px, dk, height, width)  # (n, h, w)

    def shifted(self, h, w, dh, dw, height, width):
        return self._pix(self.lib.ik_shifted, h, w, dh, dw, height, width)

    def conv_reader(self, h, w, dy, dx, k, height, width):
        return self._pix(self.lib.ik_conv_reader, h, w, dy, dx, k, height, width)

    def conv_source(self, h, w, dy, dx, k, height, width):
        return self._pix(self.lib.ik_conv_source, h, w, dy, dx, k, height, width)

    def pool_window(self, h, w, height, width):
        return self._ints(self.lib.ik_pool_window, 4, h, w, height, width)

    def pool_argmax(self, x: torch.Tensor, win):
        """pool_argmax over window `win` of a contiguous [H, W] float32/float64 tensor."""
        fn = {torch.float32: self.lib.ik_pool_argmax_f32, torch.float64: self.lib.ik_pool_argmax_f64}[x.dtype]
        assert x.dim() == 2 and x.is_contiguous()
        return fn(x.data_ptr(), x.shape[1], (_i * 4)(*win))

    def staging_bytes(self, elem, acc_elem):
        return self.lib.ik_staging_bytes(elem, acc_elem)

    def staging_b_offset(self, elem):
        return self.lib.ik_staging_b_offset(elem)

    def halo_bytes(self, t, k3, cr3, k5, cr5, elem):
        return self.lib.ik_halo_bytes(self._t(t), k3, cr3, k5, cr5, elem)

    def fwd_smem_bytes(self, t, k3, cr3, k5, cr5, elem, acc_elem):
        return self.lib.ik_fwd_smem_bytes(self._t(t), k3, cr3, k5, cr5, elem, acc_elem)

    def tile_candidates(self):
        return [self._ints(self.lib.ik_tile_candidate, 2, i) for i in range(self.c["kNumTileCandidates"])]

    def pick_fwd_tiles(self, height, width, k3, cr3, k5, cr5, elem, acc_elem, smem_limit):
        """The picked SpatialTiles, or None when nothing fits."""
        out = (_i * 4)()
        ok = self.lib.ik_pick_fwd_tiles(height, width, k3, cr3, k5, cr5, elem, acc_elem, smem_limit, out)
        return tuple(out) if ok else None

    def bwd_smem_bytes(self, elem, acc_elem):
        return self.lib.ik_bwd_smem_bytes(elem, acc_elem)

    def make_pixel_split(self, pixels, weight_tiles, rule):
        chunk, splits = _i64(), _i()
        self.lib.ik_make_pixel_split(pixels, weight_tiles, (_i64 * 3)(*rule), ctypes.byref(chunk), ctypes.byref(splits))
        return chunk.value, splits.value

    def find_segment(self, job, seg_end):
        local = _i64()
        seg = self.lib.ik_find_segment(job, (_i64 * len(seg_end))(*seg_end), ctypes.byref(local))
        return seg, local.value

    def weight_jobs(self, cout, cin, k, splits):
        return self.lib.ik_weight_jobs(cout, cin, k, splits)

    def decode_weight_job(self, local, cout, cin, k):
        return self._ints(self.lib.ik_decode_weight_job, 6, local, cout, cin, k)  # (co0, ci0, bn, dy, dx, split)

    def n_tile(self, n, i, max_bn):
        return self._ints(self.lib.ik_n_tile, 2, n, i, max_bn)  # (n0, bn)


@pytest.fixture(scope="module")
def tl(tmp_path_factory) -> _Tiling:
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no host C++ compiler (c++ / g++) to build tests/csrc/tiling_shim.cpp")
    out = tmp_path_factory.mktemp("tiling") / "tiling_shim.so"
    src = ROOT / "tests" / "csrc" / "tiling_shim.cpp"
    cmd = [cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", str(src), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stderr}"
    return _Tiling(ctypes.CDLL(str(out)))


def _cdiv(a, b):
    return -(-a // b)


def _align(v, a):
    return _cdiv(v, a) * a


def _tiles(tl, h, w, th, tw):
    """make_tiles, checked against the Python tile counts."""
    t = tl.make_tiles(h, w, th, tw)
    assert t == (th, tw, _cdiv(h, th), _cdiv(w, tw))
    return t


# ---------------------------------------------------------------------------------------------
# Constants and output channels
# ---------------------------------------------------------------------------------------------


def test_constants_satisfy_the_kernels_layout_rules(tl):
    c = tl.c
    assert c["kMaxTilePixels"] == c["kBM"], "a forward tile's pixels are one GEMM tile's rows"
    assert c["kThreads"] == 128, "one warpgroup: wgmma's 4 warps, the mma.sync core's 2 x 2 warps of 32 x bn / 2"
    assert c["kBK"] == 16 and c["kBM"] == 64 and (c["kMinBN"], c["kMaxBN"]) == (16, 128)
    # A tensor-core tile: lines of 128 bytes = 8 chunks of 8 16-bit elements; 64 k per stage.
    assert c["kChunk"] * 2 == 16 and c["kLineBytes"] == 128 and c["kTileLines"] == 64
    assert c["kTcBK"] * 2 == c["kLineBytes"] and c["kTcAtomBytes"] == c["kTileLines"] * c["kLineBytes"] == 8192
    # A: 64 rows; B: up to 128 rows (K-major) or 64 k-lines of two 64-column atoms (MN-major)
    assert c["kTcATileBytes"] == c["kTcAtomBytes"] and c["kTcBTileBytes"] == c["kMaxBN"] * c["kLineBytes"]
    assert c["kTcBTileBytes"] == 2 * c["kTcAtomBytes"] and c["kTcStageBytes"] == c["kTcATileBytes"] + c["kTcBTileBytes"]
    assert c["kTcStageBytes"] % 1024 == 0 and c["kTcATileBytes"] % 1024 == 0, "tiles on the swizzle's 1024-byte period"
    assert c["kStages"] >= 3, "at least two stages in flight while one is multiplied"
    # Every thread stages a whole number of chunks of every tile width (rows / 16 each).
    for rows in (16, 32, 64, 128):
        assert rows * (c["kLineBytes"] // 16) % c["kThreads"] == 0
        assert c["kThreads"] % (rows // c["kChunk"]) == 0, "MN-major: a thread keeps one chunk column"
    assert c["kSimtBN"] == 64 and c["kMaxBN"] % c["kSimtBN"] == 0
    assert c["kDxBN"] == 64
    # SIMT tiles: 128 chunks (one per thread), padded leading dimensions.
    assert c["kBM"] * c["kSimtBK"] // c["kChunk"] == c["kThreads"] and c["kSimtBK"] % c["kChunk"] == 0
    assert c["kSimtLdK"] > c["kSimtBK"] and c["kSimtLdM"] > c["kBM"]
    assert c["kSimtTileElems"] >= max(c["kBM"] * c["kSimtLdK"], c["kSimtBK"] * c["kSimtLdM"])
    assert c["kSmemAlign"] % 32 == 0
    # Segments of the gradient launch: dx, the six weights, the six biases.
    assert (c["kSegDx"], c["kSegW"], c["kSegB"], c["kNumSegments"]) == (0, 1, 1 + 6, 1 + 6 + 6)
    assert c["kFwdKinds"] == 3


@pytest.mark.parametrize("layer", list(GOOGLENET_INCEPTIONS))
def test_branch_offsets_are_the_reference_concat_layout(tl, layer):
    """Each branch's channels of reference.inception's output start at branch_offsets' offset."""
    spec = GOOGLENET_INCEPTIONS[layer]
    o1, o3, o5, op, total = tl.branch_offsets(spec.ch1x1, spec.ch3x3, spec.ch5x5, spec.pool_proj)
    # Zero weights, no activation: each branch outputs its own bias; branch b's bias is b + 1.
    ws = [torch.zeros(s) for s in spec.weight_shapes]
    bs = [torch.full((s[0],), v) for s, v in zip(spec.weight_shapes, (1.0, 0.0, 2.0, 0.0, 3.0, 4.0))]
    y = reference.inception(torch.randn(1, spec.in_channels, 1, 1), ws, bs, activation=None)[0, :, 0, 0]
    assert total == y.shape[0]
    assert o1 == 0 and o1 <= o3 <= o5 <= op <= total
    for value, (lo, hi) in enumerate([(o1, o3), (o3, o5), (o5, op), (op, total)], start=1):
        assert torch.equal(y[lo:hi], torch.full((hi - lo,), float(value))), f"branch {value} at [{lo}, {hi})"


# ---------------------------------------------------------------------------------------------
# Forward jobs, tiles and halos
# ---------------------------------------------------------------------------------------------

_FWD_GRIDS = [  # (N, H, W, th, tw): exact fits, overhangs, 1-pixel images and tiles
    (1, 1, 1, 1, 1), (2, 7, 5, 4, 2), (3, 8, 8, 8, 8), (1, 9, 13, 8, 4), (2, 5, 3, 2, 2), (1, 28, 28, 8, 8),
    (2, 3, 11, 1, 8), (1, 14, 1, 8, 1),
]


@pytest.mark.parametrize("n,h,w,th,tw", _FWD_GRIDS)
def test_fwd_jobs_enumerate_each_tile_and_kind_once(tl, n, h, w, th, tw):
    t = _tiles(tl, h, w, th, tw)
    jobs = tl.num_fwd_jobs(n, t)
    assert jobs == n * _cdiv(h, th) * _cdiv(w, tw) * 3
    decoded = [tl.decode_fwd_job(j, t) for j in range(jobs)]
    want = set(itertools.product(range(n), range(0, h, th), range(0, w, tw), range(3)))
    assert len(set(decoded)) == jobs and set(decoded) == want
    for j in range(0, jobs, 3):  # the three kinds of a tile are consecutive
        tile = {d[:3] for d in decoded[j:j + 3]}
        assert len(tile) == 1 and [d[3] for d in decoded[j:j + 3]] == [0, 1, 2]


@pytest.mark.parametrize("n,h,w,th,tw", _FWD_GRIDS)
def test_tile_pixels_cover_each_image_pixel_once(tl, n, h, w, th, tw):
    t = _tiles(tl, h, w, th, tw)
    seen = []
    for j in range(0, tl.num_fwd_jobs(n, t), 3):
        img, h0, w0, _ = tl.decode_fwd_job(j, t)
        for m in range(tl.c["kBM"]):  # the kernel walks every GEMM row; rows past the tile are masked
            ph, pw, valid = tl.tile_pixel(m, h0, w0, t, h, w)
            assert valid == (m < th * tw and h0 + m // tw < h and w0 + m % tw < w)
            if m < th * tw:
                assert (ph, pw) == (h0 + m // tw, w0 + m % tw)
            if valid:
                seen.append((img, ph, pw))
    assert sorted(seen) == list(itertools.product(range(n), range(h), range(w)))


def test_fwd_job_decoding_uses_64_bit_images(tl):
    t = _tiles(tl, 28, 28, 8, 8)  # 16 tiles, 48 jobs per image
    n = 2**29 + 7  # > 2^31 jobs in all
    jobs = tl.num_fwd_jobs(n, t)
    assert jobs == n * 48 and jobs > 2**31
    for job in (jobs - 1, 2**31 + 5, 2**33 + 12345):
        img, rest = divmod(job, 48)
        tile, kind = divmod(rest, 3)
        assert tl.decode_fwd_job(job, t) == (img, tile // 4 * 8, tile % 4 * 8, kind)


_HALO_CASES = [  # (H, W, th, tw)
    (7, 5, 4, 2), (9, 13, 8, 8), (1, 1, 1, 1), (3, 11, 2, 8), (5, 5, 8, 8),
]


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("h,w,th,tw", _HALO_CASES)
def test_halo_pixels_coordinates_validity_and_interior(tl, k, h, w, th, tw):
    t = _tiles(tl, h, w, th, tw)
    hc, hr = tw + k - 1, th + k - 1
    assert tl.halo_cols(t, k) == hc and tl.halo_pixels(t, k) == hr * hc
    for h0, w0 in itertools.product(range(0, h, th), range(0, w, tw)):
        interior = []
        for p in range(hr * hc + hc):  # one row past the halo: never valid, never interior
            ph, pw, valid = tl.halo_pixel(p, h0, w0, t, k, h, w)
            in_halo = p < hr * hc
            if in_halo:
                assert (ph, pw) == (h0 - k // 2 + p // hc, w0 - k // 2 + p % hc)
            assert valid == (in_halo and 0 <= ph < h and 0 <= pw < w), (p, ph, pw)
            if tl.halo_is_interior(p, t, k):
                assert in_halo
                interior.append((ph, pw))
        # The interior is exactly the tile's th x tw pixels, in the tile's row-major order.
        assert interior == [tl.tile_pixel(m, h0, w0, t, h, w)[:2] for m in range(th * tw)]


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("th,tw", [(8, 8), (7, 7), (8, 4), (4, 4), (2, 2), (1, 1), (4, 8)])
def test_reduce_row_tiles_cover_the_halo_as_boxes(tl, k, th, tw):
    """The reduce GEMM's row tiles over a halo (halo_tile_step / halo_tile_rows): consecutive,
    every halo pixel in exactly one, at most kBM rows each; never more tiles than flat kBM-row
    pieces; where halo_tile_lines > 0, each tile is whole halo lines (a TMA box of
    lines x halo_cols pixels), and otherwise tiles are flat kBM-row pieces."""
    t = _tiles(tl, 64, 64, th, tw)
    bm, hc, n_halo = tl.c["kBM"], tw + k - 1, tl.halo_pixels(t, k)
    lines = tl.lib.ik_halo_tile_lines(tl._t(t), k)
    step = tl.lib.ik_halo_tile_step(tl._t(t), k)
    starts = list(range(0, n_halo, step))
    rows = [tl.lib.ik_halo_tile_rows(tl._t(t), k, m0) for m0 in starts]
    assert sum(rows) == n_halo and all(0 < r <= bm for r in rows)
    assert [m0 + r for m0, r in zip(starts, rows)][:-1] == starts[1:]  # consecutive, no overlap
    assert len(starts) <= -(-n_halo // bm)
    if lines:
        assert step == lines * hc <= bm and all(m0 % hc == 0 for m0 in starts)
    else:
        assert step == bm and -(-(th + k - 1) // (bm // hc if bm >= hc else 1)) > -(-n_halo // bm) or hc > bm


@pytest.mark.parametrize("cin,k", [(1, 1), (3, 1), (1, 3), (4, 3), (3, 5), (2, 7)])
def test_conv_tap_is_tap_major_channel_fastest(tl, cin, k):
    got = [tl.conv_tap(kk, cin, k) for kk in range(k * k * cin)]
    assert got == list(itertools.product(range(k), range(k), range(cin)))


@pytest.mark.parametrize("cin,k", [(8, 1), (8, 3), (16, 5), (24, 3), (64, 3), (96, 5), (136, 3)])
def test_tap_advance_steps_conv_tap_without_a_divide(tl, cin, k):
    """The loaders' K cursor: from conv_tap(kk), a step of dk lands on conv_tap(kk + dk), for the
    core's steps (a stage's depth, 64: several taps at once where cin < 64) and others, up to and
    past the last tap."""
    for dk in (0, 8, 64, cin, 3 * cin + 8):
        for kk in range(0, k * k * cin + 8, 8):
            assert tl.tap_advance(tl.conv_tap(kk, cin, k), dk, cin, k) == tl.conv_tap(kk + dk, cin, k), (kk, dk)


_CONV_CASES = [  # (H, W, th, tw): border tiles that overhang, tiles larger than the image
    (7, 5, 4, 2), (9, 13, 8, 8), (1, 1, 1, 1), (5, 3, 8, 8), (11, 7, 4, 4), (3, 9, 2, 8),
]


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("h,w,th,tw", _CONV_CASES)
def test_conv_gathered_through_the_halo_equals_conv2d(tl, k, h, w, th, tw):
    """Stage each tile's halo (zeros outside the image), then gather the KxK conv's operand
    through conv_tap / halo_index, as the forward kernel does: equals F.conv2d(pad=K//2)."""
    gen = torch.Generator().manual_seed(1000 * k + h * w)
    n, cin, cout = 2, 3, 4
    x = torch.randn(n, cin, h, w, generator=gen, dtype=torch.float64)
    wt = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64)
    t = _tiles(tl, h, w, th, tw)
    taps = [tl.conv_tap(kk, cin, k) for kk in range(k * k * cin)]
    n_halo = tl.halo_pixels(t, k)
    # The operand A[m, kk] = halo[halo_index(m, dy, dx), c] and B[kk, co] = w[co, c, dy, dx].
    idx = torch.tensor([[tl.halo_index(m, dy, dx, t, k) for dy, dx, _ in taps] for m in range(th * tw)])
    assert idx.min() >= 0 and idx.max() < n_halo
    chan = torch.tensor([c for _, _, c in taps])
    b = torch.stack([wt[:, c, dy, dx] for dy, dx, c in taps])  # [K*K*cin, cout]
    y = torch.full((n, cout, h, w), float("nan"), dtype=torch.float64)
    for j in range(0, tl.num_fwd_jobs(n, t), 3):
        img, h0, w0, _ = tl.decode_fwd_job(j, t)
        halo = torch.zeros(n_halo, cin, dtype=torch.float64)
        for p in range(n_halo):
            ph, pw, valid = tl.halo_pixel(p, h0, w0, t, k, h, w)
            if valid:
                halo[p] = x[img, :, ph, pw]
        acc = halo[idx, chan] @ b  # [th*tw, cout]
        for m in range(th * tw):
            ph, pw, valid = tl.tile_pixel(m, h0, w0, t, h, w)
            if valid:
                y[img, :, ph, pw] = acc[m]
    torch.testing.assert_close(y, F.conv2d(x, wt, padding=k // 2), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Backward: flat pixels, shifts, readers and sources
# ---------------------------------------------------------------------------------------------


def test_flat_pixel_is_row_major_over_the_batch(tl):
    n, h, w = 3, 5, 7
    got = [tl.flat_pixel(m, h, w) for m in range(n * h * w)]
    assert got == list(itertools.product(range(n), range(h), range(w)))
    for m in (2**31 + 3, 2**35 + 12345):  # 64-bit pixel indices (N*H*W > 2^31)
        img, rest = divmod(m, h * w)
        assert tl.flat_pixel(m, h, w) == (img, *divmod(rest, w))


@pytest.mark.parametrize("h,w", [(1, 1), (7, 7), (3, 5), (14, 14), (1, 6), (28, 3)])
def test_pixel_advance_steps_the_pixel_cursor_without_a_divide(tl, h, w):
    """The weight gradients' pixel cursor: pix_cursor(m) is flat_pixel(m) (in ints), and a step
    of dk from it lands on pix_cursor(m + dk), for the core's steps (8, 16, 32 between a thread's
    chunks, 16 in the bias reduction) and others, across rows and images."""
    n = 3
    for m in range(n * h * w):
        assert tl.pix_cursor(m, h, w) == tl.flat_pixel(m, h, w)
    for dk in (0, 1, 8, 16, 32, w, h * w + 5):
        for m in range(0, n * h * w, 3):
            assert tl.pixel_advance(tl.pix_cursor(m, h, w), dk, h, w) == tl.pix_cursor(m + dk, h, w), (m, dk)


@pytest.mark.parametrize("h,w", [(1, 1), (4, 5), (1, 6), (3, 1)])
def test_shifted_validity(tl, h, w):
    for ph, pw, dh, dw in itertools.product(range(h), range(w), range(-3, 4), range(-3, 4)):
        qh, qw, valid = tl.shifted(ph, pw, dh, dw, h, w)
        assert (qh, qw) == (ph + dh, pw + dw)
        assert valid == (0 <= qh < h and 0 <= qw < w)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("h,w", [(5, 4), (1, 3), (2, 2)])
def test_conv_reader_and_source_are_inverse(tl, k, h, w):
    for ph, pw, dy, dx in itertools.product(range(h), range(w), range(k), range(k)):
        sh, sw, s_ok = tl.conv_source(ph, pw, dy, dx, k, h, w)
        assert (sh, sw) == (ph + dy - k // 2, pw + dx - k // 2)
        assert s_ok == (0 <= sh < h and 0 <= sw < w)
        rh, rw, r_ok = tl.conv_reader(ph, pw, dy, dx, k, h, w)
        assert (rh, rw) == (ph - dy + k // 2, pw - dx + k // 2)
        assert r_ok == (0 <= rh < h and 0 <= rw < w)
        if s_ok:
            assert tl.conv_reader(sh, sw, dy, dx, k, h, w) == (ph, pw, True)
        if r_ok:
            assert tl.conv_source(rh, rw, dy, dx, k, h, w) == (ph, pw, True)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("h,w", [(4, 5), (1, 3), (6, 2)])
def test_backward_gathers_equal_autograd(tl, k, h, w):
    """dx gathered through conv_reader and dw through conv_source, over flat pixels of the
    whole batch, equal the gradients autograd gives for F.conv2d(pad=K//2)."""
    gen = torch.Generator().manual_seed(7 * k + h)
    n, cin, cout = 2, 3, 2
    x = torch.randn(n, cin, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(n, cout, h, w, generator=gen, dtype=torch.float64)
    want_dx, want_dw = torch.autograd.grad(F.conv2d(x, wt, padding=k // 2), (x, wt), gy)
    dx = torch.zeros_like(x)
    dw = torch.zeros_like(wt)
    for m in range(n * h * w):
        img, ph, pw = tl.flat_pixel(m, h, w)
        for dy, dx_ in itertools.product(range(k), range(k)):
            rh, rw, r_ok = tl.conv_reader(ph, pw, dy, dx_, k, h, w)
            if r_ok:  # input pixel m was read by output pixel (rh, rw) at this tap
                dx[img, :, ph, pw] += wt[:, :, dy, dx_].detach().T @ gy[img, :, rh, rw]
            sh, sw, s_ok = tl.conv_source(ph, pw, dy, dx_, k, h, w)
            if s_ok:  # output pixel m read input pixel (sh, sw) at this tap
                dw[:, :, dy, dx_] += torch.outer(gy[img, :, ph, pw], x.detach()[img, :, sh, sw])
    torch.testing.assert_close(dx, want_dx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dw, want_dw, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Max-pool windows and the pixel their gradient goes to
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(1, 1), (1, 4), (3, 1), (5, 6)])
def test_pool_window_is_the_clipped_3x3(tl, h, w):
    for ph, pw in itertools.product(range(h), range(w)):
        assert tl.pool_window(ph, pw, h, w) == (max(ph - 1, 0), min(ph + 1, h - 1), max(pw - 1, 0), min(pw + 1, w - 1))


def _pool_input(case, h, w, dtype, gen):
    x = torch.randint(0, 3, (h, w), generator=gen).to(dtype)  # integer values: many ties
    if case == "nan":
        x[torch.rand(h, w, generator=gen) < 0.2] = float("nan")
    elif case == "neg_inf":
        x[torch.rand(h, w, generator=gen) < 0.6] = float("-inf")
    elif case == "all_neg_inf":
        x.fill_(float("-inf"))
    elif case == "nan_and_inf":
        r = torch.rand(h, w, generator=gen)
        x[r < 0.3] = float("-inf")
        x[r > 0.85] = float("nan")
        x[(r > 0.5) & (r < 0.6)] = float("inf")
    return x


@pytest.mark.parametrize("case", ["ties", "nan", "neg_inf", "all_neg_inf", "nan_and_inf"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("h,w", [(1, 1), (1, 5), (4, 1), (5, 7), (8, 8)])
def test_pool_argmax_is_torch_max_pool2d_index(tl, case, dtype, h, w):
    """The pixel max_pool2d(3, stride 1, pad 1) routes each window's gradient to (its
    return_indices), for ties, NaN (the last NaN wins) and windows of -inf."""
    gen = torch.Generator().manual_seed(h * 31 + w)
    for _ in range(4):
        x = _pool_input(case, h, w, dtype, gen).contiguous()
        _, want = F.max_pool2d(x[None, None], 3, stride=1, padding=1, return_indices=True)
        got = torch.tensor([[tl.pool_argmax(x, tl.pool_window(ph, pw, h, w)) for pw in range(w)] for ph in range(h)])
        assert torch.equal(got, want[0, 0]), f"{case}\nx={x}\ngot={got}\nwant={want[0, 0]}"


# ---------------------------------------------------------------------------------------------
# Shared memory and the forward tile
# ---------------------------------------------------------------------------------------------

_ELEMS = [(2, 4), (4, 4), (8, 8)]  # (operand, accumulator) bytes: fp16/bf16, fp32, fp64


def _pad8(c):
    return -(-c // 8) * 8


def _py_staging(c, elem, acc):
    """16-bit: kStages x (A tile of 64 lines, B tile of 128 lines) of 128 bytes, on both builds
    (each multiplies a 128-wide tile in one pass); else one A and one B SIMT tile."""
    if elem == 2:
        return c["kStages"] * (c["kTileLines"] + c["kMaxBN"]) * c["kLineBytes"]
    return _align(2 * c["kSimtTileElems"] * elem, c["kSmemAlign"])


def _py_fwd_smem(c, t, k3, cr3, k5, cr5, elem, acc):
    th, tw = t[0], t[1]
    halo = max((th + k - 1) * (tw + k - 1) * _pad8(cr) * elem for k, cr in ((k3, cr3), (k5, cr5)))
    return _py_staging(c, elem, acc) + _align(halo, c["kSmemAlign"])


def test_wgmma_build_runs_on_hopper_only_and_stages_are_24_kib(tl):
    """sm_90a code (wgmma) runs on compute capability 9.0 only; every other device runs the
    sm_80 code. Both stage a 64-line A tile and a 128-line B tile: 24 KiB stages."""
    assert [cc for cc in (80, 86, 87, 89, 90, 100, 120) if tl.lib.ik_wgmma_build(cc)] == [90]
    c = tl.c
    assert c["kTcStageBytes"] == c["kTcATileBytes"] + c["kTcBTileBytes"] == 24 * 1024


@pytest.mark.parametrize("elem,acc", _ELEMS)
def test_staging_and_backward_smem_bytes(tl, elem, acc):
    c = tl.c
    staging = tl.staging_bytes(elem, acc)
    assert staging == _py_staging(c, elem, acc)
    b_off = tl.staging_b_offset(elem)
    if elem == 2:
        assert b_off == c["kTcATileBytes"] and b_off % 1024 == 0, "B tile right after A, on a swizzle period"
        assert staging % 1024 == 0
    else:
        assert b_off == c["kSimtTileElems"] * elem
    # the dx tile's workspace: the pool product over the tile's 1-pixel halo [kDxHalo][kDxBN]
    # (accumulator type) and its argmax codes (one byte each)
    assert c["kDxHalo"] == (c["kDxTile"] + 2) ** 2 and c["kDxTile"] ** 2 <= c["kBM"]
    workspace = sum(_align(v, c["kSmemAlign"]) for v in (c["kDxHalo"] * c["kDxBN"] * acc, c["kDxHalo"] * c["kDxBN"]))
    # 16-bit: it starts past the dx jobs' ring, whose products are at most kDxBN = 64 wide and
    # so pack their stages 16 KiB apart (tc_slot_bytes); the 128-wide weight-gradient jobs'
    # 24 KiB stages run over it (no workspace there). Else past the SIMT tiles.
    narrow = c["kStages"] * (c["kTcATileBytes"] + c["kTcAtomBytes"]) if elem == 2 else staging
    assert c["kDxBN"] <= c["kTileLines"]
    assert tl.lib.ik_bwd_dx_offset(elem, acc) == narrow
    assert tl.bwd_smem_bytes(elem, acc) == max(staging, narrow + workspace)
    if elem == 2:  # two blocks per A100 SM (164 KiB), and within sm_86 / sm_89's 99 KiB a block
        assert tl.bwd_smem_bytes(elem, acc) <= 80 * 1024 and 2 * (80 + 1) <= 164


def test_ring_slots_are_narrow_for_narrow_products(tl):
    """A product up to 64 wide (one atom of B) packs its ring's stages 16 KiB apart, a wider one
    24 KiB (tc_slot_bytes, DeviceCore's slot address)."""
    c = tl.c
    for bn in (16, 32, 48, 64):
        assert tl.lib.ik_tc_slot_bytes(bn) == c["kTcATileBytes"] + c["kTcAtomBytes"] == 16 * 1024
    for bn in (80, 128):
        assert tl.lib.ik_tc_slot_bytes(bn) == c["kTcStageBytes"] == 24 * 1024


def _py_n_tiles(n, max_bn):
    """The N tiles of n columns: max_bn while that many are left, then the smallest power of two
    >= what is left (at least 16) if it pads at most a quarter of itself, else the largest one below."""
    tiles, n0 = [], 0
    while n0 < n:
        rem = n - n0
        if rem >= max_bn:
            bn = max_bn
        else:
            up = 16
            while up < rem:
                up *= 2
            bn = up if up == 16 or up - rem <= up // 4 else up // 2
        tiles.append((n0, bn))
        n0 += bn
    return tiles


def test_n_tiles_follow_the_rule_and_cover_the_columns(tl):
    for max_bn in (16, 32, 64, 128):
        for n in range(1, 700):
            want = _py_n_tiles(n, max_bn)
            assert tl.lib.ik_n_tiles(n, max_bn) == len(want)
            for i, (n0, bn) in enumerate(want):
                assert tl.n_tile(n, i, max_bn) == (n0, bn)
                assert tl.lib.ik_n_tile_width(n - n0, max_bn) == bn
                assert bn in (16, 32, 64, 128) and bn <= max_bn
            assert want[-1][0] < n <= want[-1][0] + want[-1][1], "the tiles cover [0, n), none empty"
            waste = sum(bn for _, bn in want) - n
            assert waste < 16 or waste <= want[-1][1] // 4, (n, want)  # little padding for thin channels


def test_n_tiles_of_the_googlenet_channels(tl):
    """Wide layers get 128-wide tiles (wgmma m64n128k16); thin ones are padded to 16 / 32 / 64 only."""
    widths = lambda n: [bn for _, bn in (tl.n_tile(n, i, 128) for i in range(tl.lib.ik_n_tiles(n, 128)))]  # noqa: E731
    assert widths(16) == [16] and widths(24) == [32] and widths(32) == [32] and widths(48) == [64]
    assert widths(64) == [64] and widths(96) == [128] and widths(128) == [128] and widths(160) == [128, 32]
    assert widths(208) == [128, 64, 16] and widths(256) == [128, 128] and widths(384) == [128, 128, 128]
    assert widths(176) == [128, 64] and widths(832) == [128] * 6 + [64]


def test_pad8_rounds_up_to_whole_chunks(tl):
    for ch in range(0, 70):
        assert tl.lib.ik_pad8(ch) == _pad8(ch)


def test_swizzle128_is_the_128_byte_swizzle_and_conflict_free(tl):
    """Chunk c of line l of a tile sits where Swizzle<3,4,3> (byte-address bits 4-6 ^= bits 7-9,
    wgmma's 128-byte swizzle) puts the unswizzled offset l * 128 + c * 16; each 1024-byte period
    is a permutation of its chunks; and the 8 rows an ldmatrix phase reads -- 8 consecutive
    lines at one chunk -- fall in 8 different 16-byte bank groups (no bank conflict)."""
    swz = tl.lib.ik_swizzle128
    offsets = {}
    for line in range(64):
        for chunk in range(8):
            raw = line * 128 + chunk * 16
            got = swz(line, chunk)
            assert got == raw ^ (((raw >> 7) & 7) << 4), (line, chunk)
            offsets[(line, chunk)] = got
    assert sorted(offsets.values()) == list(range(0, 64 * 128, 16)), "a bijection onto the tile's chunks"
    for line0 in range(0, 64, 8):
        for chunk in range(8):
            banks = {(offsets[(line0 + r, chunk)] % 128) // 16 for r in range(8)}
            assert len(banks) == 8, (line0, chunk)


def test_tc_chunk_offset_puts_wide_mn_major_lines_in_a_second_atom(tl):
    """Chunks 0-7 of a line are swizzle128's; chunks 8-15 (columns 64-127 of an MN-major B tile)
    the same pattern one swizzle atom (kTcAtomBytes) on -- the layout wgmma reads with LBO = one
    atom; K-major lines up to 128 (B rows) use chunks 0-7 only. A bijection onto the B tile."""
    c, off = tl.c, tl.lib.ik_tc_chunk_offset
    atom = c["kTcAtomBytes"]
    seen = set()
    for line in range(64):
        for chunk in range(16):
            got = off(line, chunk)
            assert got == (chunk // 8) * atom + tl.lib.ik_swizzle128(line, chunk % 8)
            seen.add(got)
    assert sorted(seen) == list(range(0, c["kTcBTileBytes"], 16))
    assert all(off(line, ch) == tl.lib.ik_swizzle128(line, ch) for line in range(128) for ch in range(8))


@pytest.mark.parametrize("elem,acc", _ELEMS)
def test_halo_and_forward_smem_bytes(tl, elem, acc):
    c = tl.c
    for (th, tw), (k3, k5), cr3, cr5 in itertools.product(
            [(8, 8), (4, 2), (1, 1), (7, 3)], [(3, 5), (3, 3), (5, 3), (1, 1)], [1, 12, 192], [1, 5, 48]):
        t = (th, tw, 1, 1)
        halo = max((th + k3 - 1) * (tw + k3 - 1) * _pad8(cr3), (th + k5 - 1) * (tw + k5 - 1) * _pad8(cr5)) * elem
        assert tl.halo_bytes(t, k3, cr3, k5, cr5, elem) == _align(halo, c["kSmemAlign"])
        got = tl.fwd_smem_bytes(t, k3, cr3, k5, cr5, elem, acc)
        assert got == _py_fwd_smem(c, t, k3, cr3, k5, cr5, elem, acc)
        assert got % c["kSmemAlign"] == 0


def test_tile_candidates_shrink_and_fit_a_gemm_tile(tl):
    cands = tl.tile_candidates()
    assert all(1 <= th and 1 <= tw and th * tw <= tl.c["kMaxTilePixels"] for th, tw in cands)
    # Componentwise non-increasing: after clipping to any image they stay largest first.
    assert all(a[0] >= b[0] and a[1] >= b[1] and a != b for a, b in zip(cands, cands[1:]))
    assert cands[-1] == (1, 1)


def _py_pick(tl, h, w, k3, cr3, k5, cr5, elem, acc, limit):
    for th, tw in tl.tile_candidates():
        t = (min(th, h), min(tw, w), _cdiv(h, min(th, h)), _cdiv(w, min(tw, w)))
        if _py_fwd_smem(tl.c, t, k3, cr3, k5, cr5, elem, acc) <= limit:
            return t
    return None


@pytest.mark.parametrize("elem,acc", _ELEMS)
@pytest.mark.parametrize("k3,k5", [(3, 5), (3, 3)])
def test_pick_fwd_tiles_takes_the_largest_candidate_that_fits(tl, elem, acc, k3, k5):
    c = tl.c
    for (h, w), (cr3, cr5) in itertools.product([(1, 1), (2, 7), (7, 7), (14, 3), (28, 28)],
                                                [(1, 1), (12, 5), (192, 48), (2000, 16)]):
        # Limits at every candidate's exact size and one byte below it, plus none fits / all fit.
        sizes = [_py_fwd_smem(c, (min(th, h), min(tw, w)), k3, cr3, k5, cr5, elem, acc)
                 for th, tw in tl.tile_candidates()]
        for limit in sorted({0, 10**9, *sizes, *(s - 1 for s in sizes)}):
            got = tl.pick_fwd_tiles(h, w, k3, cr3, k5, cr5, elem, acc, limit)
            assert got == _py_pick(tl, h, w, k3, cr3, k5, cr5, elem, acc, limit), (h, w, cr3, cr5, limit)
            if got is None:
                assert limit < min(sizes)
                continue
            th, tw, tiles_h, tiles_w = got
            assert th * tw <= c["kMaxTilePixels"] and th <= h and tw <= w
            assert (tiles_h, tiles_w) == (_cdiv(h, th), _cdiv(w, tw))
            assert tl.fwd_smem_bytes(got, k3, cr3, k5, cr5, elem, acc) <= limit
            # No candidate with more pixels fits.
            bigger = [s for (ch, cw), s in zip(tl.tile_candidates(), sizes) if min(ch, h) * min(cw, w) > th * tw]
            assert all(s > limit for s in bigger)


@pytest.mark.parametrize("layer", list(GOOGLENET_INCEPTIONS))
def test_googlenet_layers_get_the_full_tile_on_an_h100_and_an_a100(tl, layer):
    spec = GOOGLENET_INCEPTIONS[layer]
    s = spec.spatial
    k3, k5 = spec.kernel_sizes
    for (elem, acc), limit in itertools.product(_ELEMS, (SMEM_H100, SMEM_A100)):
        got = tl.pick_fwd_tiles(s, s, k3, spec.ch3x3red, k5, spec.ch5x5red, elem, acc, limit)
        assert got is not None and got[:2] == (min(8, s), min(8, s)), (elem, limit, got)


# ---------------------------------------------------------------------------------------------
# Backward grid: pixel splits, segments, weight jobs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pixels", [0, 1, 15, 16, 17, 255, 256, 257, 511, 512, 513, 1000, 3 * 7 * 7, 64 * 28 * 28,
                                    256 * 28 * 28, 2**33 + 5])
def test_make_pixel_split_is_the_python_rule(tl, pixels):
    """The CUDA backward splits the weight gradients' pixels with the rule it receives from
    _layout (WGRAD_SPLIT, the one source of the numbers), by the formula of testing.pixel_split:
    both must give the same split for every rule (before issue 15 C++ had its own 256 px / 64
    splits, Triton 512 px / no cap)."""
    kbk = tl.c["kBK"]
    rules = [testing.WGRAD_SPLIT, testing.PixelSplitRule(528, 256, 64), testing.PixelSplitRule(10**4, 1, 3),
             testing.PixelSplitRule(1, 2048, 1000)]
    for weight_tiles, rule in itertools.product([0, 1, 3, 100, 10**6], rules):
        chunk, splits = tl.make_pixel_split(pixels, weight_tiles, rule.as_ints())
        assert (splits, chunk) == testing.pixel_split(pixels, weight_tiles, kbk, rule), (weight_tiles, rule)
        assert chunk % kbk == 0 and chunk >= kbk
        assert splits <= rule.max_splits
        assert (max(splits, 1) - 1) * chunk < max(pixels, 1) and pixels <= splits * chunk, \
            "chunks cover [0, pixels) exactly, none empty"
        assert splits <= _cdiv(pixels, rule.min_pixels) or splits == 1
        if weight_tiles > 0:
            assert splits <= max(1, _cdiv(rule.target_jobs, weight_tiles))


@pytest.mark.parametrize("seed", range(5))
def test_find_segment_maps_jobs_to_segments(tl, seed):
    gen = torch.Generator().manual_seed(seed)
    nseg = tl.c["kNumSegments"]
    sizes = torch.randint(0, 6, (nseg,), generator=gen)
    sizes[torch.rand(nseg, generator=gen) < 0.4] = 0  # empty segments (gradients not needed)
    if seed == 0:
        sizes[0] = sizes[-1] = 0
    ends = torch.cumsum(sizes, 0).tolist()
    for job in range(ends[-1] + 3):
        seg, local = tl.find_segment(job, ends)
        if job >= ends[-1]:
            assert (seg, local) == (nseg, 0)
            continue
        want = bisect.bisect_right(ends, job)
        assert seg == want and sizes[seg] > 0
        assert local == job - (ends[seg - 1] if seg else 0)
        assert 0 <= local < sizes[seg]


def test_find_segment_uses_64_bit_jobs(tl):
    ends = [2**32 + 10 * i for i in range(tl.c["kNumSegments"])]
    assert tl.find_segment(2**32 + 25, ends) == (3, 5)
    assert tl.find_segment(2**31 + 1, ends) == (0, 2**31 + 1)


@pytest.mark.parametrize("cout,cin,k,splits", [(1, 1, 1, 1), (7, 20, 1, 1), (130, 65, 3, 2), (64, 64, 5, 3),
                                               (200, 129, 5, 1), (16, 832, 1, 4)])
def test_decode_weight_job_enumerates_each_job_once(tl, cout, cin, k, splits):
    bm = tl.c["kBM"]
    ci_tiles = _py_n_tiles(cin, tl.c["kMaxBN"])
    jobs = tl.weight_jobs(cout, cin, k, splits)
    assert jobs == _cdiv(cout, bm) * len(ci_tiles) * k * k * splits
    got = [tl.decode_weight_job(j, cout, cin, k) for j in range(jobs)]
    want = {(co0, ci0, bn, dy, dx, s) for co0, (ci0, bn), dy, dx, s in
            itertools.product(range(0, cout, bm), ci_tiles, range(k), range(k), range(splits))}
    assert len(set(got)) == jobs and set(got) == want
