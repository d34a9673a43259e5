"""Triton kernels and their launchers.

- ``_common``: shared jitted implicit-GEMM conv tile and epilogue helpers.
- ``inception_fwd``: the fused Inception forward (one launch) and its launcher.
- ``batchnorm_train``: the block with BatchNorm in training mode (3 launches forward, 5 backward).
- ``aot``: ahead-of-time compile of every kernel configuration the launchers pick (no GPU).

Nothing is imported eagerly: whether ``@triton.jit`` builds interpreted or compiled kernels
depends on ``TRITON_INTERPRET`` at import time of the kernel modules.
"""
