"""``inception-kernels report``: what the fused kernels execute and how they compile, argued
without a GPU (see :mod:`.build` for what the report holds).

One module per concern:

- :mod:`.model`: the bytes / FLOP / time model of a launch (estimates; every constant sourced);
- :mod:`.facts`: facts read from compiled code (cuobjdump resource usage, SASS, PTX; the CUDA
  extension's library) and the occupancy they allow;
- :mod:`.build`: gathers the report (launch counts, plans, ahead-of-time compiles, the dump,
  the targets check);
- :mod:`.format`: the terminal table and the Markdown;
- :mod:`.command`: the command line.
"""

from .build import (ARCHS, BATCH, DTYPE_BYTES, SCHEDULES, TARGETS, build_report, check_targets, count_all_launches,
                    dump_kernels, min_bytes)
from .command import add_arguments, run_cli
from .facts import cuda_kernel_facts, cuda_launch_facts, ptx_facts, sass_kernel_facts
from .format import format_markdown, format_table

__all__ = ["ARCHS", "BATCH", "DTYPE_BYTES", "SCHEDULES", "TARGETS", "build_report", "check_targets",
           "count_all_launches", "dump_kernels", "min_bytes", "add_arguments", "run_cli", "cuda_kernel_facts",
           "cuda_launch_facts", "ptx_facts", "sass_kernel_facts", "format_markdown", "format_table"]
