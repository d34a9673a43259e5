"""Static facts about compiled kernels (a Triton cubin and its PTX, or the CUDA extension's
library), read without a GPU.

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

On top of those: :func:`ptx_facts` and :func:`sass_kernel_facts` (how a kernel's GEMMs are fed:
MMA shapes, cp.async, scalar 16-bit loads), and for the CUDA C++ extension
:func:`extension_info` (what its fat binary holds), :func:`cuda_kernel_facts` and
:func:`cuda_launch_facts`.
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
from typing import Optional, Sequence, Union

__all__ = [
    "ARCH_LIMITS",
    "ArchLimits",
    "cuda_kernel_facts",
    "cuda_launch_facts",
    "extension_info",
    "occupancy",
    "parse_resource_usage",
    "ptx_facts",
    "resource_usage",
    "sass",
    "sass_kernel_facts",
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

# ---------------------------------------------------------------------------------------------
# PTX and SASS of one kernel
# ---------------------------------------------------------------------------------------------


_PTX_SCALAR_16BIT_LOAD = re.compile(r"\bld\.global(?:\.[a-z0-9:]+)*?\.(?:b16|u16|s16|f16|bf16)\s")
_PTX_CP_ASYNC = re.compile(r"\bcp\.async\.c[ag]\.shared\.global\b")
_HGMMA_SHAPE = re.compile(r"^HGMMA\.(\d+)x(\d+)x(\d+)")


def ptx_facts(ptx: str) -> dict:
    """Facts of a kernel's PTX: ``{"ptx_scalar_16bit_loads": ld.global of a single 16-bit value,
    "ptx_cp_async": cp.async instructions, "ptx_vector_loads": ld.global.v2/v4/v8}`` (static
    counts)."""
    return dict(
        ptx_scalar_16bit_loads=len(_PTX_SCALAR_16BIT_LOAD.findall(ptx)),
        ptx_cp_async=len(_PTX_CP_ASYNC.findall(ptx)),
        ptx_vector_loads=len(re.findall(r"\bld\.global(?:\.[a-z0-9:]+)*?\.v[248]\.", ptx)),
    )


# "ttng.async_tma_copy_global_to_local %x_desc[%p0, %c0] %a_24, %bar, %true : !tt.tensordesc<...>, ... ->
# !ttg.memdesc<64x32xbf16, ...>" and "%a_24 = ttg.memdesc_index %a[%c0_i32] : !ttg.memdesc<4x64x32xbf16, ..."
# (Triton 3.6 and 3.8 alike)
_TTGIR_TMA_LOAD = re.compile(r"ttng\.async_tma_copy_global_to_local\s+%[\w.]+\[[^\]]*\]\s+(%[\w.]+)\s*,"
                             r".*?->\s*!ttg\.memdesc<((?:\d+x)+)")
_TTGIR_MEMDESC_DEF = re.compile(r"^\s*(%[\w.]+)\s*=\s*ttg\.memdesc_(?:index|subview)\s+%[\w.]+.*?:\s*"
                                r"!ttg\.memdesc<((?:\d+x)+)", re.M)


def ttgir_facts(ttgir: str) -> dict:
    """TMA facts of a kernel's TTGIR (Triton's GPU IR): ``{"tma_loads": n (descriptor loads
    the pipeliner made asynchronous copies), "tma_ring_min": the fewest shared-memory stages
    any of them lands in (None without TMA)}``.

    A TMA load of a pipelined loop writes one stage ``memdesc_index %buf[i]`` of a buffer of
    ``stages`` boxes (``!ttg.memdesc<4x64x32xbf16 ...>``: 4 stages, ``stages - 1`` loads in
    flight while one is multiplied); a load outside any ring writes a lone box (1 stage).
    """
    defs: dict = {}  # SSA name -> [(position, dims)]: names repeat across functions and regions
    for m in _TTGIR_MEMDESC_DEF.finditer(ttgir):
        defs.setdefault(m.group(1), []).append((m.start(), [int(d) for d in m.group(2).rstrip("x").split("x")]))
    rings = []
    for m in _TTGIR_TMA_LOAD.finditer(ttgir):
        box_rank = len(m.group(2).rstrip("x").split("x"))
        before = [d for pos, d in defs.get(m.group(1), []) if pos < m.start()]  # the nearest definition
        dims = before[-1] if before else None
        rings.append(dims[0] if dims is not None and len(dims) == box_rank + 1 else 1)
    return dict(tma_loads=len(rings), tma_ring_min=min(rings) if rings else None)


_SASS_ARCH = re.compile(r"^arch = (sm_\d+a?)\s*$", re.M)
_SASS_FUNCTION = re.compile(r"^\s*Function : (\S+)\s*$", re.M)


# "/*0a40*/  @!P0 HMMA.16816.F32.BF16 R4, R8, R12, R4 ;" -> ("HMMA.16816.F32.BF16", " R4, ...")
_SASS_FULL_OPCODE = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Za-z0-9_.]*)(.*)$")
# A scalar 16-bit load from global memory, direct or through a generic pointer: LDG.E.U16,
# LDG.E.U16.CONSTANT, LD.E.S16, ...
_SCALAR_16BIT_LOAD = re.compile(r"^LDG?\.E(?:\.[A-Z0-9]+)*?\.[US]16(?:\.|$)")
_DEPBAR_SB0 = re.compile(r"SB0,\s*(0x[0-9a-fA-F]+|\d+)")


def sass_kernel_facts(sass_body: str) -> dict:
    """Static facts of one kernel's SASS that show how its GEMMs are fed.

    Args:
        sass_body: the kernel's disassembly (``cuobjdump -sass``, one ``Function`` section).

    Returns:
        ``{"tensor_core_instructions": {base opcode: n}, "mma_instructions": {full opcode: n}
        (the MMA shapes, e.g. ``HMMA.16816.F32.BF16`` = mma.sync m16n8k16, ``HGMMA.64x64x16.F32.BF16``
        = wgmma m64n64k16), "ldgsts": n (cp.async), "utmaldg": n (TMA loads), "ldsm": n (ldmatrix),
        "scalar_16bit_loads": n (``LDG.E.U16`` and kin), "cp_async_wait_max": the largest N of
        ``DEPBAR.LE SB0, N`` (cp.async groups left in flight at a wait; None without one),
        "pipeline_stages": N + 2 (the stage being multiplied, the N still in flight, and the one
        issued next: the ring of stages the main loop cycles through; None without cp.async),
        "wgmma_groups": n (``WARPGROUP.ARRIVE``: each opens a run of warpgroup MMAs that chain
        without waiting for one another; as many as HGMMAs when ptxas serializes them),
        "global_stores_128": n (16-byte global stores, ``STG.E.128``)}``.
        Static counts of instructions in the binary, not executed counts.
    """
    mma: Counter = Counter()
    counts = Counter()
    waits = []
    for line in sass_body.splitlines():
        m = _SASS_FULL_OPCODE.match(line)
        if not m:
            continue
        op, rest = m.groups()
        base = op.split(".")[0]
        if base in ("HMMA", "HGMMA", "IMMA", "DMMA", "BMMA", "IGMMA", "QGMMA", "BGMMA"):
            mma[op] += 1
        elif base in ("LDGSTS", "UTMALDG", "LDSM"):
            counts[base.lower()] += 1
        elif op == "WARPGROUP.ARRIVE":
            counts["wgmma_groups"] += 1
        elif base == "STG" and ".128" in op:
            counts["global_stores_128"] += 1
        elif base == "DEPBAR":
            w = _DEPBAR_SB0.search(rest)
            if w:
                waits.append(int(w.group(1), 0))
        if _SCALAR_16BIT_LOAD.match(op):
            counts["scalar_16bit_loads"] += 1
    wait_max = max(waits) if waits else None
    return dict(
        tensor_core_instructions=tensor_core_instructions(sass_body + "\n"),
        mma_instructions=dict(sorted(mma.items())),
        ldgsts=counts["ldgsts"], utmaldg=counts["utmaldg"], ldsm=counts["ldsm"],
        scalar_16bit_loads=counts["scalar_16bit_loads"], cp_async_wait_max=wait_max,
        pipeline_stages=None if wait_max is None or not counts["ldgsts"] else wait_max + 2,
        wgmma_groups=counts["wgmma_groups"], global_stores_128=counts["global_stores_128"],
    )


def _sass_facts_per_kernel(sass_text: str) -> dict[str, dict[str, dict]]:
    """``{arch: {mangled kernel: sass_kernel_facts(...)}}`` from ``cuobjdump -sass`` of a fat
    binary (one section per embedded cubin, each headed ``arch = sm_XX``, kernels headed
    ``Function : name``)."""
    out: dict[str, dict[str, dict]] = {}
    arches = list(_SASS_ARCH.finditer(sass_text))
    for a, nxt in zip(arches, arches[1:] + [None]):
        section = sass_text[a.end(): nxt.start() if nxt else len(sass_text)]
        funcs = list(_SASS_FUNCTION.finditer(section))
        for f, fnxt in zip(funcs, funcs[1:] + [None]):
            body = section[f.end(): fnxt.start() if fnxt else len(section)]
            out.setdefault(a.group(1), {})[f.group(1)] = sass_kernel_facts(body)
    return out


def _arch_selected(arch: str, archs: Optional[Sequence[str]]) -> bool:
    """Whether ``arch`` of the binary is asked for: ``"sm_90"`` also selects ``"sm_90a"``."""
    return archs is None or arch in archs or arch.rstrip("a") in archs


def cuda_kernel_facts(archs: Optional[Sequence[str]] = None) -> dict:
    """Static facts of the CUDA C++ extension's kernels, per kernel and arch, from the built
    library (``cuobjdump -res-usage`` via :func:`extension_info`, and
    ``cuobjdump -sass`` for the tensor-core instructions). No GPU and no import of the library.

    Args:
        archs: keep these architectures only (default: every arch in the fat binary);
            ``"sm_90"`` also keeps the arch-specific ``"sm_90a"``.

    Returns:
        ``{"state", "reason", "path", "archs", "error", "kernels"}``: the extension's status
        and why (``state`` / ``reason`` of :func:`inception_kernels._ext.status`), and
        ``kernels``, one record per kernel and arch: ``arch``, ``kernel`` (demangled),
        ``mangled``, ``registers``, ``spill_bytes`` (stack frame: spills and local arrays),
        ``local_bytes``, ``shared_static_bytes`` (dynamic shared memory is chosen at launch and
        is not in the binary), and the SASS facts of :func:`sass_kernel_facts`
        (``tensor_core_instructions``, ``mma_instructions`` -- the MMA shapes --, ``ldgsts``,
        ``utmaldg``, ``ldsm``, ``scalar_16bit_loads``, ``cp_async_wait_max``,
        ``pipeline_stages``). ``kernels`` is empty when there is no library (``reason`` says
        why) or the tools failed (``error``).
    """
    info = extension_info()
    out = dict(state=info["state"], reason=info["reason"], path=info["path"],
               archs=[a for a in info["archs"] if _arch_selected(a, archs)], error=info["error"], kernels=[])
    if info["path"] is None or info["error"]:
        return out
    try:
        sass_facts = _sass_facts_per_kernel(sass(info["path"]))
    except (OSError, RuntimeError) as e:
        out["error"] = f"cuobjdump -sass failed: {e}"
        return out
    mangled = sorted({k for kernels in info["resources"].values() for k in kernels})
    names = _demangle(mangled)
    for arch in out["archs"]:
        for k, res in sorted(info["resources"].get(arch, {}).items(), key=lambda kv: names[kv[0]]):
            out["kernels"].append(dict(
                arch=arch, kernel=names[k], mangled=k, registers=res["registers"], spill_bytes=res["stack_bytes"],
                local_bytes=res["local_bytes"], shared_static_bytes=res["shared_static_bytes"],
                **sass_facts.get(arch, {}).get(k, sass_kernel_facts("")),
            ))
    return out


#: The C++ template argument of each report dtype (the kernels are instantiated per type).
_CUDA_TYPES = {"bf16": ("__nv_bfloat16", "bfloat16"), "fp16": ("__half", "float16"), "fp32": ("float", "float32")}
#: The fused CUDA kernels of one module: (kernel, which plan entry is its dynamic shared memory).
_CUDA_LAUNCH_KERNELS = (("inception_fwd_kernel", 2), ("inception_reduce_grad_kernel", 4),
                        ("inception_grads_kernel", 5))


def cuda_launch_facts(cuda: dict, layers: Sequence[str], dtype: str, batch: int) -> list[dict]:
    """Launch facts of the fused CUDA kernels per layer and arch: the forward's tile and grid,
    each kernel's dynamic shared memory (which cuobjdump cannot see) and the occupancy it
    allows with the kernel's registers, from the extension's own plan
    (``torch.ops.inception_kernels.cuda_fused_inception_plan``; no GPU needed).

    Args:
        cuda: :func:`cuda_kernel_facts` (registers per kernel and arch).
        layers: GoogLeNet layer keys (spatial sizes at 224x224).
        dtype: ``"bf16"``, ``"fp16"`` or ``"fp32"``.
        batch: the modeled batch.

    Returns:
        One record per ``(layer, arch, kernel)``: ``layer, arch, kernel, tile`` (``[th, tw]``,
        forward only), ``blocks`` (forward only; the backward's grid depends on which gradients
        are needed), ``dynamic_smem_bytes``, ``registers`` and ``occupancy``
        (:func:`inception_kernels.occupancy` of the registers and the dynamic plus static
        shared memory). Empty when the extension is not loaded.
    """
    import torch

    from ... import _ext
    from ...spec import GOOGLENET_INCEPTIONS

    if not cuda["kernels"] or not _ext.status().loaded:
        return []
    tname, tdtype = _CUDA_TYPES[dtype][0], getattr(torch, _CUDA_TYPES[dtype][1])
    regs = {(k["arch"], name): (k["registers"], k["shared_static_bytes"]) for k in cuda["kernels"]
            for name, _ in _CUDA_LAUNCH_KERNELS if f"{name}<{tname}>" in k["kernel"]}
    out = []
    for layer in layers:
        spec = GOOGLENET_INCEPTIONS[layer]
        for arch in cuda["archs"]:
            limit = ARCH_LIMITS[arch].shared_per_block
            plan = torch.ops.inception_kernels.cuda_fused_inception_plan(
                batch, spec.spatial, spec.spatial, spec.ch3x3red, spec.kernel_sizes[0], spec.ch5x5red,
                spec.kernel_sizes[1], tdtype, limit, int(arch[3:5]))
            for name, smem_index in _CUDA_LAUNCH_KERNELS:
                r, static = regs.get((arch, name), (None, 0))
                forward = name == "inception_fwd_kernel"
                out.append(dict(
                    layer=layer, arch=arch, kernel=f"{name}<{tname}>", tile=plan[:2] if forward else None,
                    blocks=plan[3] if forward else None, dynamic_smem_bytes=plan[smem_index], registers=r,
                    # plan[6]: the kernels' threads per block, from the extension (tiling::kThreads)
                    occupancy=None if r is None else occupancy(r, plan[smem_index] + static, plan[6] // 32, arch),
                ))
    return out


# ---------------------------------------------------------------------------------------------
# The CUDA C++ extension's library (cuobjdump; no GPU, the library is not loaded)
# ---------------------------------------------------------------------------------------------


def _demangle(names: list[str]) -> dict[str, str]:
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {n: n for n in names}
    return dict(zip(names, out.stdout.splitlines()))


def _resource_usage_per_arch(path: str) -> dict[str, dict[str, dict]]:
    """``{arch: {kernel: record}}`` from ``cuobjdump -res-usage`` of a fat binary."""
    text = subprocess.run(
        [tool_path("cuobjdump"), "-res-usage", path], capture_output=True, text=True, check=True
    ).stdout
    per_arch: dict[str, dict[str, dict]] = {}
    marks = list(_SASS_ARCH.finditer(text))
    for m, nxt in zip(marks, marks[1:] + [None]):
        section = text[m.end(): nxt.start() if nxt else len(text)]
        per_arch.setdefault(m.group(1), {}).update(parse_resource_usage(section))
    return per_arch


def extension_info() -> dict:
    """What the built extension holds, read from the library file with ``cuobjdump``.

    Works without a GPU and without loading the library.

    Returns:
        ``{"state", "reason", "path", "archs", "kernels", "resources", "error"}``:
        ``archs`` the SASS architectures in the fat binary (``cuobjdump --list-elf``),
        ``kernels`` the demangled kernel names, ``resources`` ``{arch: {mangled kernel:
        record}}`` as :func:`inception_kernels.parse_resource_usage` gives (registers,
        ``stack_bytes`` = spills, shared memory), ``error`` a message when the tools failed.
        Empty lists / dicts when there is no library.
    """
    from ... import _ext

    st = _ext.status()
    info = {"state": st.state, "reason": st.reason, "path": _ext.library_path(), "archs": [], "kernels": [],
            "resources": {}, "error": None}
    if info["path"] is None:
        return info
    try:
        elf = subprocess.run(
            [tool_path("cuobjdump"), "--list-elf", info["path"]], capture_output=True, text=True, check=True
        ).stdout
        info["archs"] = sorted(set(re.findall(r"\.(sm_\d+a?)\.cubin", elf)))
        info["resources"] = _resource_usage_per_arch(info["path"])
    except (OSError, subprocess.CalledProcessError) as e:
        info["error"] = f"cuobjdump failed: {e}"
        return info
    mangled = sorted({k for kernels in info["resources"].values() for k in kernels})
    info["kernels"] = sorted(set(_demangle(mangled).values()))
    return info
