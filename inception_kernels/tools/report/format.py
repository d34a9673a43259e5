"""The report as text: a terminal table (:func:`format_table`) and Markdown for the README
(:func:`format_markdown`), from the dict :func:`~inception_kernels.tools.report.build.build_report`
returns. Formatting only: nothing here computes a figure."""

from __future__ import annotations

from typing import Sequence

from ..ui import dtype_name, short_kernel
from .build import BATCH
from .facts import _CUDA_LAUNCH_KERNELS

__all__ = ["format_table", "format_markdown"]


def _cuda_launch_lines(launches: Sequence[dict], markdown: bool) -> list[str]:
    """Per layer: the forward's tile and grid, and each fused kernel's dynamic shared memory
    and occupancy (blocks per SM)."""
    if not launches:
        return []
    archs = sorted({r["arch"] for r in launches})
    by = {(r["layer"], r["arch"], r["kernel"].split("<")[0]): r for r in launches}
    layers = list(dict.fromkeys(r["layer"] for r in launches))

    def cell(layer, name):
        parts = []
        for a in archs:
            r = by[(layer, a, name)]
            occ = r["occupancy"]
            parts.append(f"{r['dynamic_smem_bytes'] / 1024:.1f} KiB, {occ['blocks_per_sm'] if occ else '?'} blk/SM")
        return " / ".join(parts)

    head = ["layer", "fwd tile", "fwd blocks", *(f"{n[len('inception_'):-len('_kernel')]} {'/'.join(archs)}"
                                                  for n, _ in _CUDA_LAUNCH_KERNELS)]
    rows = []
    for layer in layers:
        f = by[(layer, archs[0], "inception_fwd_kernel")]
        tile = "x".join(map(str, f["tile"])) if f["tile"][0] else "does not fit"
        rows.append([layer, tile, str(f["blocks"]), *(cell(layer, n) for n, _ in _CUDA_LAUNCH_KERNELS)])
    title = (f"CUDA C++ fused kernels per layer ({launches[0]['kernel'].split('<')[1].rstrip('>')}; dynamic shared "
             "memory from the extension's launch plan, occupancy modeled from registers + shared memory):")
    if markdown:
        return ["", title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
            "| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    return ["", title] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]


def _cuda_lines(cuda: dict, markdown: bool) -> list[str]:
    """The CUDA extension's section: one row per kernel and arch, or why there is none."""
    if not cuda["kernels"]:
        why = cuda["error"] or (cuda["reason"] if cuda["path"] is None else "no kernels in the library")
        return [f"CUDA C++ extension kernels: none to report ({cuda['state']}: {why})"]
    head = ("arch", "regs", "spill B", "local B", "static smem B", "LDGSTS", "UTMALDG", "LDSM", "16-bit LDG",
            "stages", "MMA instructions (shape: count)", "kernel")
    rows = [(k["arch"][3:], str(k["registers"]), str(k["spill_bytes"]), str(k["local_bytes"]),
             str(k["shared_static_bytes"]), str(k["ldgsts"]), str(k["utmaldg"]), str(k["ldsm"]),
             str(k["scalar_16bit_loads"]), str(k["pipeline_stages"] or "-"),
             ",".join(f"{op}:{n}" for op, n in k["mma_instructions"].items()) or "-",
             short_kernel(k["kernel"]))
            for k in cuda["kernels"]]
    no_spill = sum(k["spill_bytes"] == 0 and k["local_bytes"] == 0 for k in cuda["kernels"])
    title = (f"CUDA C++ extension kernels ({cuda['reason']}; static facts from cuobjdump of {cuda['path']}; "
             f"0 spill bytes {no_spill}/{len(cuda['kernels'])}; LDGSTS (cp.async) / UTMALDG (TMA) / LDSM / scalar 16-bit "
             "global loads and MMA instructions are static counts in the SASS; stages: the cp.async ring, largest "
             "DEPBAR.LE SB0, N + 2; the TMA boxes land in the same ring):")
    if markdown:
        return [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
            "| " + " | ".join(r[:-1]) + f" | `{r[-1]}` |" for r in rows] + _cuda_launch_lines(
            cuda.get("launches", []), True)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda r: " ".join(c.ljust(w) if i in (10, 11) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [title] + [fmt(r).rstrip() for r in [head, *rows]] + _cuda_launch_lines(cuda.get("launches", []), False)


def _s(v) -> str:
    return "-" if v is None else str(v)


def _kernel_cell(name: str, f: dict) -> str:
    mma = ",".join(f"{op.split('.F32')[0]}x{n}" for op, n in f["mma_instructions"].items()) or "no MMA"
    return (f"{name}: {f['registers']} regs, {f['spill_bytes']} B spill, {round(f['shared_bytes'] / 1024)} KiB smem, "
            f"{f['occupancy']['blocks_per_sm']} CTA/SM, {mma}, cp.async {f['ldgsts']} "
            f"(wait<= {_s(f['cp_async_wait_max'])}), "
            + (f"TMA {f['utmaldg']} (ring {_s(f.get('tma_ring_min'))}), " if f["utmaldg"] else "")
            + f"16-bit scalar loads {f['ptx_scalar_16bit_loads']}")


def _target_lines(report: dict) -> list[str]:
    rows = report.get("targets")
    if rows is None:
        return ["targets: not checked (--no-compile)"]
    out = []
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        bad = [f"{r['layer']}/{r['arch']} ({r['detail']})" for r in mine if not r["ok"]]
        out.append(f"target {target}: {sum(r['ok'] for r in mine)}/{len(mine)}"
                   + (f" -- missed: {'; '.join(bad)}" if bad else ""))
    errors = (report.get("manifest") or {}).get("errors") or []
    out += [f"compile failed: {e['layer']}/{e['arch']} {e['kernel']}: {e['error']}" for e in errors]
    return out


def format_table(report: dict) -> str:
    """The report for a terminal: one block per layer and arch."""
    recs = report["records"]
    head = recs[0] if recs else dict(batch=BATCH, dtype="bf16")
    dtype = dtype_name(head["dtype"])  # the canonical spelling: bfloat16
    lines = [f"Triton kernels, GoogLeNet Inception layers at 224x224, batch {head['batch']}, {dtype}, "
             "channels_last -- static facts and a MODEL (nothing measured; no GPU)", ""]
    for r in recs:
        lines.append(
            f"{r['layer']} {r['arch']}: forward {r['schedule']} ({_s(r['launches_forward'])} launch), backward "
            f"{_s(r['launches_backward'])} launches (eager aten ops: {r['launches_forward_eager']} / "
            f"{r['launches_backward_eager']})")
        lines.append(f"  why: {r['reason']}")
        lines.append(
            f"  GFLOP forward {r['flops_forward'] / 1e9:.1f} useful, {r['flops_forward_executed'] / 1e9:.1f} executed "
            f"({r['flops_forward_executed'] / r['flops_forward']:.3f}x); backward {r['flops_backward'] / 1e9:.1f} "
            f"useful, {r['flops_backward_executed'] / 1e9:.1f} executed "
            f"({r['flops_backward_executed'] / r['flops_backward']:.3f}x)")
        for stage in ("forward", "backward"):
            parts = [f"{m['kernel']} {m['modeled_us']:.1f} us ({m['bound']}-bound, MMA efficiency {m['efficiency']:.2f})"
                     for m in r[f"model_{stage}"]]
            lines.append(f"  modeled {stage}: {r[f'modeled_{stage}_us']:.1f} us = " + " + ".join(parts))
        lines.append(f"  modeled forward as {r['other_schedule']}: {r['other_modeled_forward_us']:.1f} us, "
                     f"{r['other_flops_executed'] / r['flops_forward']:.3f}x the useful FLOPs")
        for name, f in (r["kernels"] or {}).items():
            lines.append("  " + _kernel_cell(name, f))
    lines += [""] + _target_lines(report) + [""] + [f"note: {n}" for n in report["meta"]["notes"]]
    if "cuda_extension" in report:
        lines += [""] + _cuda_lines(report["cuda_extension"], markdown=False)
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The report as Markdown tables (for the README)."""
    recs = report["records"]
    lines = [
        "| layer | arch | forward schedule | launches fwd / bwd (eager aten ops) | GFLOP fwd useful / executed "
        "| GFLOP bwd useful / executed | modeled us fwd / bwd (bound) | regs / spill / MMA [/ TMA] (fwd kernels) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        bounds = "/".join(m["bound"] for m in r["model_forward"] + r["model_backward"])
        ks = r["kernels"] or {}
        static = "; ".join(
            f"{f['registers']} / {f['spill_bytes']} / "
            + (",".join(op.split(".F32")[0] for op in f["mma_instructions"]) or "-")
            + (f" / TMA ({f['utmaldg']} UTMALDG, ring {_s(f.get('tma_ring_min'))})" if f["utmaldg"] else "")
            for name, f in ks.items() if name.startswith("inception_fwd")) or "-"
        lines.append(
            f"| {r['layer']} | {r['arch']} | {r['schedule']} | {_s(r['launches_forward'])} / "
            f"{_s(r['launches_backward'])} ({r['launches_forward_eager']} / {r['launches_backward_eager']}) "
            f"| {r['flops_forward'] / 1e9:.1f} / {r['flops_forward_executed'] / 1e9:.1f} "
            f"| {r['flops_backward'] / 1e9:.1f} / {r['flops_backward_executed'] / 1e9:.1f} "
            f"| {r['modeled_forward_us']:.0f} / {r['modeled_backward_us']:.0f} ({bounds}) | {static} |"
        )
    lines += [""] + [f"- {t}" for t in _target_lines(report)]
    cuda = [""] + _cuda_lines(report["cuda_extension"], markdown=True) if "cuda_extension" in report else []
    return "\n".join(lines + cuda)
