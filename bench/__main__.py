"""Run the benchmarks: ``python -m bench`` runs all, ``python -m bench NAME...`` some."""

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import bench

NOT_BENCHMARKS = {"common", "__main__"}
BENCH_DIR = Path(bench.__path__[0])


def summary(name: str) -> str:
    """First line of a benchmark's docstring, read without importing it (nor its kernels)."""
    doc = ast.get_docstring(ast.parse((BENCH_DIR / f"{name}.py").read_text())) or ""
    return doc.splitlines()[0] if doc else ""


def usage(available: list[str]) -> str:
    lines = ["usage: python -m bench [NAME...]", "",
             "Runs the named benchmarks (all of them without a NAME) and prints their figures.",
             "", "benchmarks:"]
    lines += [f"  {name:15s} {summary(name)}" for name in available]
    return "\n".join(lines)


def main(names: list[str]) -> None:
    available = sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                       if m.name not in NOT_BENCHMARKS)
    if any(name in ("-h", "--help") for name in names):
        print(usage(available))
        return
    unknown = [name for name in names if name not in available]
    if unknown:  # before any benchmark runs: a typo must not cost the minutes of the others
        sys.exit(f"no benchmark {', '.join(map(repr, unknown))}; "
                 f"choose from {', '.join(available)}")
    for name in names or available:
        print(f"== bench.{name}", flush=True)
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
