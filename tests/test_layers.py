"""The package's layers: the library never imports its tools, no module imports itself back
through others, tests reach private modules only through ``inception_kernels.testing``, and the
command line speaks plain text and one dtype vocabulary.

The import checks read the source with ``ast`` (no import runs), except the first, which
imports the package in a fresh interpreter and looks at ``sys.modules``.
"""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import inception_kernels

PKG_DIR = Path(inception_kernels.__file__).resolve().parent
REPO = PKG_DIR.parent
TOOLS = "inception_kernels.tools"


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _package_imports(path: Path) -> set[str]:
    """The ``inception_kernels`` modules one source file imports, anywhere in it (function-level
    imports included), resolved to module names: ``from . import x`` names ``pkg.x`` when that
    is a module, else ``pkg``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "inception_kernels"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "inception_kernels":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if _is_module(sub) else target)
    return out


def _is_module(name: str) -> bool:
    p = REPO.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _package_imports(p) for p in sorted(PKG_DIR.rglob("*.py"))}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module, or a module importing
    itself (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert cycles == [], f"modules that import each other (directly or through others): {cycles}"


def test_cycle_finder_finds_a_cycle():
    """The check above can fail: a made-up graph with cli -> report -> cli is caught."""
    graph = {"a.cli": {"a.report.build"}, "a.report.build": {"a.report.format"}, "a.report.format": {"a.cli"},
             "a.spec": set()}
    assert _cycles(graph) == [["a.cli", "a.report.build", "a.report.format"]]


def test_the_library_never_imports_a_tool():
    """No module outside ``inception_kernels.tools`` imports one inside it (not even lazily, in a
    function)."""
    bad = {m: sorted(d for d in deps if d == TOOLS or d.startswith(TOOLS + "."))
           for m, deps in _graph().items() if not (m == TOOLS or m.startswith(TOOLS + "."))}
    bad = {m: d for m, d in bad.items() if d and m != "inception_kernels.__main__"}  # __main__ runs the cli
    assert bad == {}, f"library modules importing tools: {bad}"


# Tests reach the library's private modules and names only through ``inception_kernels.testing``
# (or tests/_support.py, which may wrap them): a test names what it checks, and a private module
# can move without touching the suite. These imports must stay, each for the reason given:
PRIVATE_IMPORTS_ALLOWED = {
    # unit tests of a private module that monkeypatch its internals (the module object is the
    # point: each replaces one lookup the module makes, to reach a branch no CPU machine takes)
    ("test_auto_backend.py", "inception_kernels._backends"),   # _device_identity, _cuda_backend_runs
    ("conftest.py", "inception_kernels._backends"),            # _kernel_modes (the interpreter fixture)
    ("test_build.py", "inception_kernels._ext"),               # _read_build_info, status' cache
    ("test_fused_forward.py", "inception_kernels._backends"),  # cuda_status, as the op looks it up
}
# Doors used instead (inception_kernels.testing): triton_forward_plan, googlenet_min_input_size,
# override_wgrad_split, measured_table / override_measured. The tools' helper modules are public
# within tools (tools.ui, tools.checkpoint, tools.data): the library never imports them.


def _private_imports(source: str) -> set[str]:
    """The private ``inception_kernels`` modules and names one test file imports (function-level
    imports included), as dotted names cut at the first private part: ``from inception_kernels
    import _ext`` and ``from inception_kernels._ext import status`` both give
    ``inception_kernels._ext``. Dunders (``__version__``) are public."""
    def cut(dotted: str):
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                return ".".join(parts[:i + 1])
        return None

    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module + "." + a.name for a in node.names]
        else:
            continue
        out |= {c for n in names if n.split(".")[0] == "inception_kernels" and (c := cut(n))}
    return out


def _tests_private_imports() -> set[tuple[str, str]]:
    tests = Path(__file__).resolve().parent
    return {(p.name, m) for p in sorted(tests.glob("*.py")) if p.name != "_support.py"
            for m in _private_imports(p.read_text())}


def test_tests_import_no_private_module():
    """No test file imports a private module or name of the package, except through
    ``inception_kernels.testing`` (or tests/_support.py) and the commented allowlist above; and
    every allowlist entry is still needed (a stale one would hide a new import)."""
    found = _tests_private_imports()
    assert found - PRIVATE_IMPORTS_ALLOWED == set(), \
        f"tests importing private modules/names (use inception_kernels.testing): {sorted(found - PRIVATE_IMPORTS_ALLOWED)}"
    assert PRIVATE_IMPORTS_ALLOWED - found == set(), f"stale allowlist entries: {sorted(PRIVATE_IMPORTS_ALLOWED - found)}"


def test_private_import_finder_finds_them():
    """The check above can fail: every spelling of a private import is caught, public ones are not."""
    src = textwrap.dedent("""
        import inception_kernels._ext
        from inception_kernels import _backends, reference, __version__
        from inception_kernels.triton._launches import count_launches
        from inception_kernels.ops import _split_grads, fused_inception
        from inception_kernels.testing import count_launches, split_grads
        from _support import make_relu_inputs
        def f():
            from inception_kernels.tools import _ui
    """)
    assert _private_imports(src) == {"inception_kernels._ext", "inception_kernels._backends",
                                     "inception_kernels.triton._launches", "inception_kernels.ops._split_grads",
                                     "inception_kernels.tools._ui"}


def test_importing_the_package_loads_no_tool():
    """``import inception_kernels`` in a fresh interpreter loads no tool module, no argparse-based
    command line, and none of the tools' optional dependencies."""
    code = textwrap.dedent("""
        import sys
        import torch, triton
        before = set(sys.modules)
        import inception_kernels
        new = sorted(set(sys.modules) - before)
        print([m for m in new if m.startswith('inception_kernels.tools')
               or m.split('.')[0] in ('tqdm', 'matplotlib', 'torchvision', 'PIL', 'argparse')])
        print(len([m for m in new if m.startswith('inception_kernels')]) > 5)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == ["[]", "True"], res.stdout


# --------------------------------------------------------------------------- the command line

SUBCOMMANDS = ("info", "verify", "report", "bench", "train", "evaluate")


def _help(*args) -> str:
    """``inception-kernels [args] --help``, as ``python -m inception_kernels`` prints it."""
    from inception_kernels.tools import cli

    parser = cli._parser()
    if args:
        parser = next(a for a in parser._actions if a.dest == "command").choices[args[0]]
    return parser.format_help()


def test_python_m_help():
    """``python -m inception_kernels --help`` runs the command line (exit 0, plain text)."""
    res = subprocess.run([sys.executable, "-m", "inception_kernels", "--help"], capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout == _help(), "python -m prints what the parser formats"


@pytest.mark.parametrize("sub", ("",) + SUBCOMMANDS)
def test_help_is_plain_text(sub):
    """No reST markup in ``--help``: double backticks, roles, directives."""
    text = _help(*([sub] if sub else []))
    assert "usage: inception-kernels" in text
    for markup in ("``", ":func:", ":mod:", ":class:", ":data:", ":attr:", "\n.. "):
        assert markup not in text, f"{markup!r} in `inception-kernels {sub} --help`:\n{text}"


def test_plain_strips_rest():
    from inception_kernels.tools.ui import plain

    assert plain("See :func:`~inception_kernels.fuse` and ``x``::\n\n.. note:: gone\n  y") == "See fuse and x:\n\n  y"
    assert plain(":mod:`inception_kernels.tools.cli`") == "inception_kernels.tools.cli"


@pytest.mark.parametrize("sub,option", [("verify", "--dtype"), ("report", "--dtype"), ("bench", "--dtype"),
                                        ("train", "--amp"), ("evaluate", "--amp")])
def test_help_names_dtypes_canonically(sub, option):
    """Every dtype option shows torch's names (float16, bfloat16) and says the short ones work."""
    text = " ".join(_help(sub).split())
    assert "bfloat16" in text and "float16" in text, text
    assert "bf16" in text and "also accepted" in text, text
    assert f"{option} {{none,bf16" not in text, "the short names as the choices"


@pytest.mark.parametrize("sub,option,many", [("verify", "dtype", True), ("report", "dtype", False),
                                             ("bench", "dtype", True), ("train", "amp", False),
                                             ("evaluate", "amp", False)])
def test_every_subcommand_accepts_both_dtype_spellings(sub, option, many):
    """The parsed value is the same for ``bf16`` and ``bfloat16`` (and ``fp16`` / ``float16``);
    an unknown spelling is a usage error (exit 2) that names it."""
    from inception_kernels.tools import cli

    parser = cli._parser()
    extra = {"evaluate": ["--data", "val/", "--checkpoint", "checkpoint.pt"]}.get(sub, [])

    def parse(value):
        return getattr(parser.parse_args([sub, *extra, f"--{option}", value]), option)

    assert parse("bf16") == parse("bfloat16") and parse("fp16") == parse("float16")
    assert parse("bf16") != parse("fp16")
    if many:
        assert parse("fp16,bfloat16") == parse("float16,bf16")
    assert cli.main([sub, *extra, f"--{option}", "half8"]) == 2


def test_console_script_names_the_cli():
    """pyproject's ``inception-kernels`` entry point resolves to the command line's ``main``."""
    import importlib

    from inception_kernels.tools import cli

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["inception-kernels"]
    module, _, attr = target.partition(":")
    assert getattr(importlib.import_module(module), attr) is cli.main
