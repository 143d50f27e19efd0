"""What the subcommands' --help texts promise, checked against what the commands do."""

import subprocess
import sys

from field_runs import cli_env


def celeste(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "celestecli", *args], capture_output=True,
                          text=True, env=cli_env(), cwd=cwd, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_infer_exits_1_when_every_field_fails_as_its_help_says(tmp_path):
    help_text = " ".join(celeste("infer", "--help").stdout.split())
    assert "3 when some failed and 1 when all did" in help_text
    run = celeste("infer", "1/1/1", "1/1/2", "--data-dir", str(tmp_path / "sdss"),
                  "--out-dir", str(tmp_path / "out"))
    assert run.returncode == 1, run.stderr
    assert "2 of 2 failed" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()  # no catalog, no empty output directory left


def test_version_names_the_release_commit_and_openmp():
    from celestecli import __version__
    from celestecli._kernels.openmp_info import openmp_enabled
    from celestecli.revision import git_revision

    run = celeste("--version")
    assert run.returncode == 0, run.stderr
    first, second = run.stdout.splitlines()
    assert first.startswith(f"celeste {__version__} (Python {sys.version.split()[0]}")
    assert (f"git {git_revision()}" in first) == bool(git_revision())
    assert second.startswith(f"OpenMP: {'enabled' if openmp_enabled() else 'disabled'}, ")
