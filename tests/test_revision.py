"""The code's identity: git revision (GITREV) and code digest (in the rerun fingerprint)."""

import os
import shutil
import subprocess

import pytest

from celestecli.catalog import Provenance
from celestecli.revision import PACKAGE_DIR, code_digest, git_revision

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def make_package(root):
    package = root / "pkg"
    (package / "_kernels").mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    (package / "_kernels" / "elbo.so").write_bytes(b"\x7fELF kernel")
    return package


def git(cwd, *args):
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit_all(repo, *paths):
    """``git init`` ``repo`` and commit ``paths`` (default: everything in it); HEAD's hash."""
    git(repo, "init", "-q")
    git(repo, "add", *(paths or ["."]))
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return git(repo, "rev-parse", "HEAD")


@needs_git
def test_git_revision_is_head_and_says_when_tracked_files_changed(tmp_path):
    package = make_package(tmp_path / "repo")
    head = commit_all(tmp_path / "repo", "pkg/__init__.py")
    assert git_revision.__wrapped__(package) == head  # an untracked build product is not dirt
    (package / "__init__.py").write_text("VALUE = 2\n")
    assert git_revision.__wrapped__(package) == head + "-dirty"


@needs_git
def test_git_revision_leaves_the_index_alone(tmp_path):
    # every worker asks once: git status must not rewrite the index (taking index.lock, which
    # makes a commit the user runs at that moment fail) to refresh a file's stale stat data
    package = make_package(tmp_path / "repo")
    head = commit_all(tmp_path / "repo", "pkg/__init__.py")
    index = tmp_path / "repo" / ".git" / "index"
    os.utime(package / "__init__.py", (1e9, 1e9))  # same bytes, other mtime
    before = index.stat().st_mtime_ns, index.read_bytes()
    assert git_revision.__wrapped__(package) == head
    assert (index.stat().st_mtime_ns, index.read_bytes()) == before


@needs_git
def test_no_git_revision_outside_a_checkout_or_inside_another_repository(tmp_path):
    assert git_revision.__wrapped__(make_package(tmp_path / "plain")) == ""
    site = tmp_path / "project" / "venv" / "site-packages"
    package = make_package(site)
    commit_all(tmp_path / "project")  # a HEAD to name, were the repository taken for celeste's
    assert git_revision.__wrapped__(package) == ""  # the checkout is not celeste's


@needs_git
def test_catalogs_made_from_this_checkout_record_its_head():
    try:
        head = git(PACKAGE_DIR, "rev-parse", "HEAD")
    except subprocess.CalledProcessError:
        pytest.skip("celeste is not running from its git checkout")
    assert git_revision().removesuffix("-dirty") == head
    assert Provenance().git_revision == git_revision()


def test_code_digest_follows_modules_and_kernels_only(tmp_path):
    package = make_package(tmp_path)
    base = code_digest.__wrapped__(package)
    assert len(base) == 64
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    (package / "notes.txt").write_text("not code")
    assert code_digest.__wrapped__(package) == base
    (package / "_kernels" / "elbo.so").write_bytes(b"\x7fELF rebuilt kernel")
    rebuilt = code_digest.__wrapped__(package)
    assert rebuilt != base
    (package / "__init__.py").write_text("VALUE = 2\n")
    edited = code_digest.__wrapped__(package)
    assert edited not in (base, rebuilt)
    (package / "__init__.py").rename(package / "renamed.py")
    assert code_digest.__wrapped__(package) != edited
