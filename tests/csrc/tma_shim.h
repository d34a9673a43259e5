// The CPU shim's TMA and mbarriers (see cuda_shim.h): after csrc/inception_algo.h (TmaSpec,
// TmaMap) and before csrc/inception_core.cuh, in the emulator's wgmma (sm_90a) build.
#pragma once

#if defined(IK_WGMMA)
namespace inception_kernels {

// The emulator's tensor map: the TmaSpec itself, checked with the driver's rules for what the
// kernels use (cuTensorMapEncodeTiled, 16-bit elements, 128-byte swizzle): base 16-byte aligned,
// strides multiples of 16 bytes below 2^40, box dims 1..256, the inner box one 128-byte line.
inline bool tma_encode(const TmaSpec& s, TmaMap* map) {
  static_assert(sizeof(TmaSpec) <= sizeof(TmaMap), "a TmaSpec fits in a tensor map");
  if (reinterpret_cast<uintptr_t>(s.base) % 16 != 0) return false;
  for (uint64_t st : s.strides)
    if (st % 16 != 0 || st >= (uint64_t{1} << 40)) return false;
  for (int d = 0; d < 4; ++d)
    if (s.box[d] < 1 || s.box[d] > 256 || s.dims[d] < 1 || s.dims[d] > (uint64_t{1} << 32)) return false;
  if (s.box[0] * 2 != 128) return false;
  std::memset(map, 0, sizeof(TmaMap));
  std::memcpy(map, &s, sizeof s);
  return true;
}

namespace ptx {

inline void mbar_init(uint64_t* bar, int count) {
  std::lock_guard<std::mutex> lock(cuda_shim::mbar_mutex);
  cuda_shim::MBarrier b;
  b.count = count;
  cuda_shim::mbars[bar] = b;
}
inline void fence_mbar_init() {}

inline cuda_shim::MBarrier& mbar_at(uint64_t* bar) {
  auto it = cuda_shim::mbars.find(bar);
  if (it == cuda_shim::mbars.end()) cuda_shim::fail("mbarrier used before mbarrier.init", cuda_shim::smem_offset(bar));
  return it->second;
}

inline void mbar_arrive_expect_tx(uint64_t* bar, int bytes) {
  std::lock_guard<std::mutex> lock(cuda_shim::mbar_mutex);
  cuda_shim::MBarrier& b = mbar_at(bar);
  b.expect += bytes;
  if (++b.arrived > b.count) cuda_shim::fail("mbarrier: more arrivals than its count in one phase", b.arrived);
  cuda_shim::mbar_cv.notify_all();
}

inline void tma_load_4d(void* smem, const void* map, int c0, int c1, int c2, int c3, uint64_t* bar) {
  const long off = cuda_shim::smem_offset(smem);
  // The maps' 128-byte swizzle is a function of the shared address (bits 4-6 ^= bits 7-9): the
  // tiles that wgmma reads with it start on its 1024-byte period.
  if (off % 1024 != 0) cuda_shim::fail("cp.async.bulk.tensor: swizzled box not 1024-byte aligned", off);
  std::lock_guard<std::mutex> lock(cuda_shim::mbar_mutex);
  cuda_shim::MBarrier& b = mbar_at(bar);
  TmaSpec s;
  std::memcpy(&s, map, sizeof s);
  b.queued += 2L * s.box[0] * s.box[1] * s.box[2] * s.box[3];  // the whole box counts, zero fill included
  b.loads.push_back({static_cast<char*>(smem), map, {c0, c1, c2, c3}});
  ++cuda_shim::tma_boxes;
  cuda_shim::mbar_cv.notify_all();
}

// One box into shared memory: element (i0, i1, i2, i3) of the box from global coordinates
// c + i (zero outside the tensor), at byte (((i3 * box2 + i2) * box1 + i1) * 128 + 2 i0) of the
// box, 128-byte swizzled.
inline void tma_perform(const cuda_shim::BoxLoad& l) {
  TmaSpec s;
  std::memcpy(&s, l.map, sizeof s);
  const long base = cuda_shim::smem_offset(l.dst);
  long line = 0;
  for (uint32_t i3 = 0; i3 < s.box[3]; ++i3)
    for (uint32_t i2 = 0; i2 < s.box[2]; ++i2)
      for (uint32_t i1 = 0; i1 < s.box[1]; ++i1, ++line)
        for (uint32_t i0 = 0; i0 < s.box[0]; ++i0) {
          const int64_t g[4] = {int64_t{l.c[0]} + i0, int64_t{l.c[1]} + i1, int64_t{l.c[2]} + i2, int64_t{l.c[3]} + i3};
          uint16_t v = 0;
          bool inside = true;
          for (int d = 0; d < 4; ++d) inside = inside && g[d] >= 0 && static_cast<uint64_t>(g[d]) < s.dims[d];
          if (inside)
            std::memcpy(&v, static_cast<const char*>(s.base) + g[0] * 2 + g[1] * static_cast<int64_t>(s.strides[0]) +
                                g[2] * static_cast<int64_t>(s.strides[1]) + g[3] * static_cast<int64_t>(s.strides[2]),
                        2);
          long a = base + line * 128 + 2L * i0;
          a ^= ((a >> 7) & 7) << 4;
          std::memcpy(const_cast<char*>(cuda_shim::smem_base) + a, &v, 2);
        }
}

// try_wait.parity until the phase of this parity has completed: the waiter that finds it
// pending completes it once the arrival is in and the queued boxes carry exactly the announced
// bytes (fewer: it waits for the rest, as the GPU would -- forever, here a 60 s failure),
// performing the boxes.
inline void mbar_wait(uint64_t* bar, uint32_t parity) {
  std::unique_lock<std::mutex> lock(cuda_shim::mbar_mutex);
  for (;;) {
    cuda_shim::MBarrier& b = mbar_at(bar);
    if ((b.phase & 1u) != parity) return;  // the phase of this parity is complete
    if (b.queued > b.expect) cuda_shim::fail("mbarrier: more TMA bytes than expect_tx announced", b.queued - b.expect);
    if (b.arrived == b.count && b.queued == b.expect) {  // else the GPU waits too: for the arrival or the bytes
      for (const cuda_shim::BoxLoad& l : b.loads) tma_perform(l);
      b.loads.clear();
      b.arrived = 0, b.expect = 0, b.queued = 0, ++b.phase;
      cuda_shim::mbar_cv.notify_all();
      return;
    }
    if (cuda_shim::mbar_cv.wait_for(lock, std::chrono::seconds(60)) == std::cv_status::timeout)
      cuda_shim::fail("mbarrier: waited 60 s for an arrival that never came", cuda_shim::smem_offset(bar));
  }
}

}  // namespace ptx
}  // namespace inception_kernels
#endif  // IK_WGMMA
