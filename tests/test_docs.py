"""The design lives in the repository: every citation of ``docs/design.md §N`` in the code,
the tests, the benchmarks and the README names a section that exists there, and nothing cites
a design file outside the repository (``DESIGN.md``, ``../shared/DESIGN.md``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"

#: Where citations live: the package, the C++ sources, tests, benchmarks, and the top-level
#: files a reader opens first.
SCANNED_DIRS = ("inception_kernels", "csrc", "tests", "benchmarks", ".ci")
SCANNED_FILES = ("README.md", "CHANGELOG.md", "setup.py", "CMakeLists.txt", "pyproject.toml", "MANIFEST.in")
SUFFIXES = {".py", ".h", ".cuh", ".cu", ".cpp", ".md", ".toml", ".txt", ".sh", ".in", ""}

#: A section number: "4" or "4.1".
_NUM = r"\d+(?:\.\d+)?"
#: ``design.md`` (optionally in backticks) followed by one or more "§N", "§N-M" or "§N, §M".
_CITATION = re.compile(rf"design\.md`?\s*((?:§\s*{_NUM}(?:\s*[-–]\s*§?\s*{_NUM})?(?:\s*(?:,|and)\s*)?)+)", re.I)
_SECTION_REF = re.compile(rf"§\s*({_NUM})(?:\s*[-–]\s*§?\s*({_NUM}))?")
#: Any mention of a design file, with what precedes it on the line.
_MENTION = re.compile(r"([\w./-]*)(design\.md)", re.I)


def design_sections(text: str) -> set[str]:
    """Section numbers of design.md's headings: "## 4. Kernel plan" -> "4", "### 4.1 ..." -> "4.1"."""
    return {m.group(1) for m in re.finditer(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s", text, re.M)}


def cited_sections(text: str) -> list[tuple[int, str]]:
    """``(line, section)`` of every ``design.md §...`` citation; a range ``§3-5`` cites 3, 4 and 5."""
    out = []
    for m in _CITATION.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        for ref in _SECTION_REF.finditer(m.group(1)):
            first, last = ref.group(1), ref.group(2)
            if last and "." not in first and "." not in last:
                out += [(line, str(n)) for n in range(int(first), int(last) + 1)]
            else:
                out += [(line, first)] + ([(line, last)] if last else [])
    return out


def bad_mentions(text: str) -> list[tuple[int, str]]:
    """``(line, text)`` of each mention of a design file that is not exactly ``docs/design.md``."""
    out = []
    for m in _MENTION.finditer(text):
        if m.group(1).endswith("docs/") and m.group(2) == "design.md" and not m.group(1).startswith("."):
            continue
        out.append((text.count("\n", 0, m.start()) + 1, m.group(0)))
    return out


def problems(text: str, sections: set[str]) -> list[str]:
    """Every citation of a missing section and every mention of a design file outside the repo."""
    errs = [f"line {ln}: cites §{s}, which docs/design.md does not have" for ln, s in cited_sections(text)
            if s not in sections]
    errs += [f"line {ln}: {what!r} is not docs/design.md (cite the repository's own copy)"
             for ln, what in bad_mentions(text)]
    return errs


def _scanned_files() -> list[Path]:
    files = [ROOT / f for f in SCANNED_FILES if (ROOT / f).is_file()]
    for d in SCANNED_DIRS:
        files += [p for p in sorted((ROOT / d).rglob("*")) if p.is_file() and p.suffix in SUFFIXES
                  and "__pycache__" not in p.parts and p.name != Path(__file__).name]
    return files


def test_design_has_the_sections_the_issue_asks_for():
    """Architecture, fused-op semantics, both backends' kernel plans, verification, targets."""
    text = DESIGN.read_text()
    heads = [h.lower() for h in re.findall(r"^#{2,3}\s+(.*)$", text, re.M)]
    for topic in ("layers of the package", "semantics of the fused op", "triton kernels as built",
                  "cuda c++ kernels as built", "verification", "targets"):
        assert any(topic in h for h in heads), f"docs/design.md has no section on {topic!r}: {heads}"


def test_every_design_citation_names_an_existing_section():
    sections = design_sections(DESIGN.read_text())
    assert {"1", "3", "4", "4.1", "7"} <= sections, sections  # the parser reads the headings
    found, errs = 0, []
    for path in _scanned_files():
        text = path.read_text(errors="replace")
        found += len(cited_sections(text))
        errs += [f"{path.relative_to(ROOT)}: {e}" for e in problems(text, sections)]
    assert found >= 20, f"only {found} citations found: is the pattern still right?"
    assert not errs, "\n".join(errs)


@pytest.mark.parametrize("text, bad", [
    ("see docs/design.md §3", []),
    ("(docs/design.md §3-4)", []),
    ("(docs/design.md §7, §9)", []),
    ("`docs/design.md` §4.1", []),
    ("see docs/design.md §12", ["§12"]),
    ("(docs/design.md §8-11)", ["§10", "§11"]),
    ("(docs/design.md §4.7)", ["§4.7"]),
    ("(docs/design.md §7, §19)", ["§19"]),
    ("see DESIGN.md §3", ["'DESIGN.md'"]),
    ("see ../shared/DESIGN.md §3", ["'../shared/DESIGN.md'"]),
    ("see design.md §3", ["'design.md'"]),
])
def test_the_checker_catches_bad_citations(text, bad):
    """The check above can fail: a missing section, a range running past the last one, and a
    design file outside the repository are each reported."""
    sections = {"1", "2", "3", "4", "4.1", "5", "6", "7", "8", "9"}
    errs = problems(text, sections)
    assert len(errs) == len(bad), errs
    for e, b in zip(errs, bad):
        assert b in e, (e, b)
