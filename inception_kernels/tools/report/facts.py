"""Static facts about a compiled kernel (a cubin), read without a GPU.

Parses what NVIDIA's binary tools say about a cubin: ``cuobjdump -res-usage`` (registers,
stack frame, static shared memory, local and constant memory per kernel) and
``cuobjdump -sass`` (the machine code, whose opcodes show whether tensor cores are used).
The tools ship inside the Triton wheel (``triton/backends/nvidia/bin``); ``$CUDA_HOME/bin``,
``/usr/local/cuda/bin`` and ``PATH`` are the fallbacks.

:func:`occupancy` turns registers, shared memory and warps per block into resident blocks
per SM from the per-architecture limits NVIDIA publishes (CUDA C Programming Guide,
"Compute Capabilities" table; CUDA Occupancy Calculator). Assumptions, stated once:

- registers are allocated per warp in units of 256 (``ceil(regs * 32 / 256) * 256``);
- shared memory is allocated in units of 128 bytes, plus 1 KB per block reserved by the
  CUDA runtime, and the SM runs with its largest shared-memory carveout (the driver picks
  the carveout a kernel needs; Triton opts in to the maximum per-block size);
- nothing else (barriers, the 4-way split of the register file between sub-partitions)
  limits residency.

Triton allocates its shared memory dynamically: the compiled kernel's ``metadata.shared``
holds that amount, while ``cuobjdump``'s ``SHARED`` counts only static shared memory.
Add both before calling :func:`occupancy`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Union

__all__ = [
    "ARCH_LIMITS",
    "ArchLimits",
    "occupancy",
    "parse_resource_usage",
    "resource_usage",
    "sass",
    "sass_opcodes",
    "tensor_core_instructions",
    "tool_path",
]

Cubin = Union[bytes, str, os.PathLike]

#: SASS opcodes that run on tensor cores: warp-level MMA (Volta..Ada, and still used on
#: Hopper for small tiles), Hopper warpgroup MMA (``*GMMA``), Blackwell ``UTC*MMA``.
_TENSOR_CORE_OPCODE = re.compile(r"^(?:[HIDB]MMA|[HIQB]GMMA|UTC\w*MMA\w*|OMMA|QMMA)$")


@dataclass(frozen=True)
class ArchLimits:
    """Per-SM residency limits of one compute capability (NVIDIA's published figures).

    Args:
        max_warps: resident warps per SM.
        max_blocks: resident thread blocks per SM.
        registers: 32-bit registers per SM.
        max_registers_per_thread: the most registers one thread can address.
        register_unit: register allocation unit per warp.
        shared_per_sm: shared memory per SM at the largest carveout, bytes.
        shared_per_block: the most shared memory one block can opt in to, bytes.
        shared_unit: shared memory allocation unit, bytes.
        shared_reserved_per_block: shared memory the CUDA runtime reserves per block, bytes.
    """

    max_warps: int
    max_blocks: int
    registers: int = 65536
    max_registers_per_thread: int = 255
    register_unit: int = 256
    shared_per_sm: int = 0
    shared_per_block: int = 0
    shared_unit: int = 128
    shared_reserved_per_block: int = 1024


#: Published limits by architecture name (``"sm_80"`` A100, ``"sm_86"``/``"sm_89"`` consumer
#: Ampere/Ada, ``"sm_90"`` H100).
ARCH_LIMITS: dict[str, ArchLimits] = {
    "sm_80": ArchLimits(max_warps=64, max_blocks=32, shared_per_sm=164 * 1024, shared_per_block=163 * 1024),
    "sm_86": ArchLimits(max_warps=48, max_blocks=16, shared_per_sm=100 * 1024, shared_per_block=99 * 1024),
    "sm_89": ArchLimits(max_warps=48, max_blocks=24, shared_per_sm=100 * 1024, shared_per_block=99 * 1024),
    "sm_90": ArchLimits(max_warps=64, max_blocks=32, shared_per_sm=228 * 1024, shared_per_block=227 * 1024),
}
ARCH_LIMITS["sm_90a"] = ARCH_LIMITS["sm_90"]  # the arch-specific target (wgmma) of the same GPUs


def tool_path(name: str) -> str:
    """Locate one of NVIDIA's binary tools (``cuobjdump``, ``nvdisasm``, ``ptxas``).

    Args:
        name: the tool's file name.

    Returns:
        The path of the executable: Triton's bundled copy first, then ``$CUDA_HOME/bin``,
        ``/usr/local/cuda/bin`` and ``PATH``.

    Raises:
        FileNotFoundError: when no copy exists.
    """
    candidates = []
    spec = importlib.util.find_spec("triton")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "backends" / "nvidia" / "bin" / name)
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home:
            candidates.append(Path(home) / "bin" / name)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"{name} not found: looked in {[str(c) for c in candidates]} and PATH "
        "(install triton with its NVIDIA backend, or set CUDA_HOME)"
    )


def _run_tool(tool: str, args: list[str], cubin: Cubin) -> str:
    """Run ``tool args <cubin file>`` and return its stdout (bytes go through a temp file)."""
    if isinstance(cubin, (bytes, bytearray)):
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(cubin)
            f.flush()
            return _run_tool(tool, args, f.name)
    if not isinstance(cubin, (str, os.PathLike)):
        raise TypeError(f"cubin must be bytes or a path, got {type(cubin).__name__}")
    path = os.fspath(cubin)
    if not os.path.isfile(path):
        raise ValueError(f"cubin path {path!r} is not a file")
    proc = subprocess.run([tool_path(tool), *args, path], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)} {path} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


_FUNCTION_LINE = re.compile(r"^\s*Function\s+(\S+?):\s*$")
_FIELD = re.compile(r"([A-Z_]+)(?:\[(\d+)\])?:(\d+)")


def parse_resource_usage(text: str) -> dict[str, dict]:
    """Parse the text of ``cuobjdump -res-usage``.

    Args:
        text: the tool's output, e.g.::

            Resource usage:
             Common:
              GLOBAL:0
             Function _kernel:
              REG:32 STACK:0 SHARED:1024 LOCAL:0 CONSTANT[0]:568 TEXTURE:0 SURFACE:0 SAMPLER:0

    Returns:
        ``{kernel name: record}`` where a record has ``registers`` (per thread),
        ``stack_bytes`` (per-thread stack frame: register spills and local arrays),
        ``shared_static_bytes``, ``local_bytes``, ``constant_bytes`` (summed over banks),
        ``constant_banks`` (``{bank: bytes}``), ``texture``, ``surface`` and ``sampler``.

    Raises:
        ValueError: when a ``Function`` line is not followed by its fields.
    """
    out: dict[str, dict] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _FUNCTION_LINE.match(line)
        if not m:
            continue
        fields_line = lines[i + 1] if i + 1 < len(lines) else ""
        fields = _FIELD.findall(fields_line)
        if not fields:
            raise ValueError(f"no resource fields after {line.strip()!r}: got {fields_line!r}")
        raw: dict[str, int] = {}
        banks: dict[int, int] = {}
        for key, bank, value in fields:
            if key == "CONSTANT":
                banks[int(bank or 0)] = int(value)
            else:
                raw[key] = int(value)
        out[m.group(1)] = {
            "registers": raw.get("REG", 0),
            "stack_bytes": raw.get("STACK", 0),
            "shared_static_bytes": raw.get("SHARED", 0),
            "local_bytes": raw.get("LOCAL", 0),
            "constant_bytes": sum(banks.values()),
            "constant_banks": banks,
            "texture": raw.get("TEXTURE", 0),
            "surface": raw.get("SURFACE", 0),
            "sampler": raw.get("SAMPLER", 0),
        }
    return out


def resource_usage(cubin: Cubin) -> dict[str, dict]:
    """Per-kernel resource usage of a cubin (``cuobjdump -res-usage``).

    Args:
        cubin: the cubin's bytes (``compiled.asm["cubin"]``) or a path to it.

    Returns:
        ``{kernel name: record}`` as :func:`parse_resource_usage` describes.
    """
    return parse_resource_usage(_run_tool("cuobjdump", ["-res-usage"], cubin))


def sass(cubin: Cubin) -> str:
    """The SASS (machine code) of every kernel in a cubin, as ``cuobjdump -sass`` prints it.

    Args:
        cubin: the cubin's bytes or a path to it.

    Returns:
        The disassembly text.
    """
    return _run_tool("cuobjdump", ["-sass"], cubin)


# "/*04b0*/   @!P0 HMMA.16816.F32 R16, R20, R8, RZ ;" -> "HMMA"
_SASS_INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)")


def sass_opcodes(sass_text: str) -> Counter:
    """Count base opcodes (the mnemonic before the first ``.``) in SASS text.

    Args:
        sass_text: output of :func:`sass` (or ``nvdisasm``).

    Returns:
        ``Counter({opcode: static instruction count})``.
    """
    counts: Counter = Counter()
    for line in sass_text.splitlines():
        m = _SASS_INSTRUCTION.match(line)
        if m:
            counts[m.group(1)] += 1
    return counts


def tensor_core_instructions(cubin_or_sass: Cubin) -> dict[str, int]:
    """Static counts of tensor-core instructions in a cubin's SASS.

    Args:
        cubin_or_sass: a cubin (bytes or path), or SASS text already produced by :func:`sass`
            (a ``str`` containing a newline is taken as SASS text).

    Returns:
        ``{opcode: count}`` for the tensor-core opcodes present, e.g. ``{"HMMA": 64}`` on
        sm_80 or ``{"HGMMA": 16}`` on sm_90; empty when the kernel uses no tensor cores.
        These are instructions in the binary, not executed counts.
    """
    text = cubin_or_sass if isinstance(cubin_or_sass, str) and "\n" in cubin_or_sass else sass(cubin_or_sass)
    return {op: n for op, n in sorted(sass_opcodes(text).items()) if _TENSOR_CORE_OPCODE.match(op)}


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def occupancy(registers: int, shared_bytes: int, num_warps: int, arch: str) -> dict:
    """Resident blocks and warps per SM for a kernel, from the published limits.

    Args:
        registers: registers per thread (``REG`` of :func:`resource_usage`).
        shared_bytes: shared memory per block, bytes: Triton's dynamic ``metadata.shared``
            plus the static ``shared_static_bytes``.
        num_warps: warps per block.
        arch: ``"sm_80"``, ``"sm_86"``, ``"sm_89"`` or ``"sm_90"`` (see :data:`ARCH_LIMITS`).

    Returns:
        ``{"blocks_per_sm", "warps_per_sm", "occupancy" (warps_per_sm / max warps),
        "limited_by" ("registers" | "shared" | "warps" | "blocks"; "does not fit" when
        one block cannot be resident), "limits": {reason: blocks}}``.

    Raises:
        ValueError: for an unknown ``arch`` or out-of-range arguments.
    """
    if arch not in ARCH_LIMITS:
        raise ValueError(f"arch must be one of {sorted(ARCH_LIMITS)}, got {arch!r}")
    lim = ARCH_LIMITS[arch]
    for name, v, lo in (("registers", registers, 0), ("shared_bytes", shared_bytes, 0), ("num_warps", num_warps, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    if registers > lim.max_registers_per_thread:
        raise ValueError(f"registers must be <= {lim.max_registers_per_thread} on {arch}, got {registers}")

    regs_per_warp = _round_up(max(registers, 1) * 32, lim.register_unit)
    smem_per_block = _round_up(shared_bytes, lim.shared_unit) + lim.shared_reserved_per_block
    limits = {
        "warps": lim.max_warps // num_warps,
        "blocks": lim.max_blocks,
        "registers": (lim.registers // regs_per_warp) // num_warps,
        "shared": lim.shared_per_sm // smem_per_block if shared_bytes <= lim.shared_per_block else 0,
    }
    blocks = min(limits.values())
    if blocks == 0:
        limited_by = "does not fit"
    else:
        # Name the binding limit; ties go to the resource the kernel controls.
        limited_by = next(k for k in ("registers", "shared", "warps", "blocks") if limits[k] == blocks)
    return {
        "blocks_per_sm": blocks,
        "warps_per_sm": blocks * num_warps,
        "occupancy": blocks * num_warps / lim.max_warps,
        "limited_by": limited_by,
        "limits": limits,
    }
