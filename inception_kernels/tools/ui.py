"""The vocabulary every ``inception-kernels`` subcommand shares.

- **dtypes**: one canonical spelling, torch's (``float32``, ``float16``, ``bfloat16``,
  ``float64``), shown in every ``--help`` and accepted together with the short one (``fp32``,
  ``fp16``, ``bf16``, ``fp64``): :func:`dtype_name`, :func:`parse_dtypes`, :func:`dtype_type`.
- **help text**: :func:`plain` turns a reST docstring into the plain text ``--help`` prints.
- **kernel names**: :func:`short_kernel` shortens a demangled C++ kernel name for a table.
- **progress**: :func:`progress`, a tqdm bar on stderr for the steps that take minutes.

Standard library only: importing this module costs nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Callable, Iterable, Optional, Sequence

__all__ = ["DTYPE_SHORT", "dtype_name", "short_dtype", "parse_dtypes", "dtype_type", "dtype_help", "plain",
           "short_kernel", "progress"]

#: The canonical dtype names (torch's), each with its short spelling.
DTYPE_SHORT = {"float64": "fp64", "float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
_ALIASES = {**{short: name for name, short in DTYPE_SHORT.items()}, **{name: name for name in DTYPE_SHORT}}


def dtype_name(name: str, allowed: Optional[Sequence[str]] = None, what: str = "--dtype") -> str:
    """The canonical name of a dtype spelling.

    Args:
        name: ``"bf16"`` or ``"bfloat16"`` (either spelling, any case).
        allowed: the canonical names the caller accepts (default: all of :data:`DTYPE_SHORT`).
        what: the argument's name, for the error.

    Returns:
        The canonical name, e.g. ``"bfloat16"``.

    Raises:
        ValueError: an unknown spelling, or a dtype not in ``allowed``; the message names
            ``what``, the value and the accepted names.
    """
    allowed = tuple(DTYPE_SHORT) if allowed is None else tuple(allowed)
    canonical = _ALIASES.get(name.strip().lower())
    if canonical is None or canonical not in allowed:
        raise ValueError(f"{what}: unknown dtype {name!r}; expected one of {', '.join(allowed)} "
                         f"(or {', '.join(DTYPE_SHORT[a] for a in allowed)})")
    return canonical


def short_dtype(name: str) -> str:
    """The short spelling (``"bf16"``) of either spelling of a dtype (the key some tools'
    files use).

    Raises:
        ValueError: an unknown spelling.
    """
    return DTYPE_SHORT[dtype_name(name)]


def parse_dtypes(text: str, allowed: Optional[Sequence[str]] = None, what: str = "--dtype") -> list[str]:
    """Canonical names of a comma-separated dtype list, in order, without repeats.

    Args:
        text: e.g. ``"fp32,bfloat16"``.
        allowed, what: as :func:`dtype_name`.

    Returns:
        e.g. ``["float32", "bfloat16"]``.

    Raises:
        ValueError: an empty list or an unknown / not allowed dtype.
    """
    names = [dtype_name(t, allowed, what) for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError(f"{what}: no dtype given in {text!r}")
    return list(dict.fromkeys(names))


def dtype_type(allowed: Optional[Sequence[str]] = None, many: bool = False,
               convert: Callable[[str], str] = lambda name: name) -> Callable[[str], object]:
    """An argparse ``type=`` for a dtype option: either spelling in, ``convert(canonical)`` out.

    Args:
        allowed: canonical names accepted (default all).
        many: a comma-separated list (returns a list).
        convert: maps the canonical name to what the tool uses (e.g. :func:`short_dtype`).

    Returns:
        The converter; it raises ``argparse.ArgumentTypeError`` (argparse prints it, exit 2).
    """
    def parse(text: str):
        try:
            names = parse_dtypes(text, allowed) if many else [dtype_name(text, allowed)]
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("--dtype: ")) from None
        out = [convert(n) for n in names]
        return out if many else out[0]

    parse.__name__ = "dtype"  # argparse names the type in its error: "invalid dtype value"
    return parse


def dtype_help(allowed: Sequence[str]) -> str:
    """``"float32, float16 or bfloat16 (fp32, fp16, bf16 also accepted)"``."""
    names = list(allowed)
    head = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"{head} ({', '.join(DTYPE_SHORT[n] for n in names)} also accepted)"


_ROLE = re.compile(r":(?:func|mod|class|data|attr|meth|exc|obj|ref|doc):`~?([^`]+)`")
_DIRECTIVE = re.compile(r"^[ \t]*\.\. .*$\n?", re.M)


def plain(text: Optional[str]) -> str:
    """A reST docstring as the plain text ``--help`` prints: roles (``:func:`x```) become
    ``x``, double backticks and ``.. directive`` lines go, ``::`` becomes ``:``.

    Args:
        text: reST text (None gives "").

    Returns:
        The text without markup.
    """
    if not text:
        return ""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).find("~") >= 0 else m.group(1), text)
    text = _DIRECTIVE.sub("", text)
    text = text.replace("``", "").replace("::", ":")
    return re.sub(r"`([^`]+)`", r"\1", text)


def short_kernel(name: str) -> str:
    """'void ns::(anonymous namespace)::k<float, true>(float const*, ...)' -> 'k<float, true>'."""
    name = re.sub(r"^void ", "", name)
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):  # drop the parameter list: the first '(' outside <...>
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0 and not name.startswith("(anonymous", i):
            cut = i
            break
    return re.sub(r"^.*::", "", re.sub(r"\(anonymous namespace\)::", "", name[:cut]))


def progress(iterable: Iterable, total: Optional[int], desc: str, unit: str = "it", enabled: bool = True):
    """A tqdm progress bar on stderr over ``iterable``, for steps that take minutes.

    The bar is shown only when ``enabled``, stderr is a terminal (not a pipe, a file or a test's
    capture) and tqdm is installed (it is optional: ``pip install tqdm``); otherwise the
    iterable comes back as it is. Stdout (the tables, ``--json``) is never touched.

    Args:
        iterable: what to iterate.
        total: its length, if known.
        desc: the bar's label.
        unit: what one step is.
        enabled: False turns the bar off (e.g. ``--json`` or a library call).

    Returns:
        An iterable over the same items.
    """
    if not enabled or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
