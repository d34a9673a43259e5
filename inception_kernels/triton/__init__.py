"""Triton kernels and their launchers.

- ``_common``: shared jitted implicit-GEMM conv tile and epilogue helpers.
- ``inception_fwd``: the fused Inception forward (one launch) and its launcher.
- ``batchnorm_train``: the block with BatchNorm in training mode (3 launches forward, 5 backward).
- ``_launches``: every kernel is launched through its ``_launch``, which counts (or records)
  the launches; tests and tools use it through ``inception_kernels.testing``.
- ``_config``: where the kernels run (the target GPU), their tiling, and the machine figures of
  the forward's schedule choice.

The ahead-of-time compiler and the performance model are tools: ``inception_kernels.tools.aot``
and ``inception_kernels.tools.report.model``.

Nothing is imported eagerly: whether ``@triton.jit`` builds interpreted or compiled kernels
depends on ``TRITON_INTERPRET`` at import time of the kernel modules.
"""
