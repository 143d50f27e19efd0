"""``python -m bench``, the benchmark runner that ``make bench`` calls: its help and its names.

Run as a user runs it, from the repository root, without running any benchmark (they take
minutes).
"""

import ast
import subprocess
import sys

from field_runs import REPO, cli_env

BENCHMARKS = sorted(p.stem for p in (REPO / "bench").glob("*.py")
                    if p.stem not in ("__init__", "__main__", "common"))


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_help_lists_every_benchmark_with_its_summary():
    for flag in ("--help", "-h"):
        run = run_bench(flag)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("usage: python -m bench [NAME...]")
        assert "== bench." not in run.stdout  # nothing was run
        for name in BENCHMARKS:
            doc = ast.get_docstring(ast.parse((REPO / "bench" / f"{name}.py").read_text()))
            assert f"  {name} " in run.stdout
            assert doc.splitlines()[0] in run.stdout


def test_unknown_name_is_refused_before_any_benchmark_runs():
    run = run_bench(BENCHMARKS[0], "no_such_bench")
    assert run.returncode == 1
    assert "== bench." not in run.stdout  # the valid name before it did not start
    assert "'no_such_bench'" in run.stderr
    for name in BENCHMARKS:
        assert name in run.stderr
