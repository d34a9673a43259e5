"""Where backend "auto" runs the CUDA C++ kernels instead of Triton: measured, never assumed.

Data only. Written by ``python benchmarks/results.py measured`` from the GPU runs committed
under ``benchmarks/results/<device>/<date>-<commit>/`` (``bash benchmarks/gpu_check.sh`` makes
them); do not edit by hand: tests/test_results_tool.py checks that this file is what the tool
writes from the committed runs. An entry says that on that device, in that dtype, for that
module shape, input size and layout, the CUDA backend passed ``verify`` and the run's CUDA
tests, and its median time was below Triton's in every mode measured (forward and
forward+backward). :func:`inception_kernels._backends.auto_picks_cuda` reads it.

No GPU run has been committed yet: the table is empty and "auto" never picks "cuda".
"""

#: One dict per (device, dtype, module, input size, layout): ``device`` (name), ``capability``
#: ("9.0"), ``dtype`` ("bfloat16"), ``channels`` (in, 1x1, 3x3red, 3x3, 5x5red, 5x5, pool_proj),
#: ``kernel_sizes``, ``activation``, ``height``, ``width``, ``channels_last``; for the record,
#: ``layer``, ``batch``, ``ms`` ({mode: {"triton": ms, "cuda": ms}}) and ``source`` (the run).
CUDA_FASTER = ()
