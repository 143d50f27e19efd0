"""Which code made a catalog: the git revision (for people) and a digest of the code (for reruns).

``git_revision`` is recorded as ``GITREV`` in every catalog; it is empty when celeste runs from
an installed copy rather than from its git checkout.  ``code_digest`` enters the fingerprint that
decides whether a field is up to date (``parallel.fingerprint``): the version alone does not
change when the code does, so catalogs made by an older build would otherwise count as current.
"""

import functools
import hashlib
import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# What runs: Python modules and compiled kernels (not caches, data files or build leftovers).
CODE_SUFFIXES = (".py", ".so", ".pyd")


@functools.cache
def git_revision(package_dir: Path = PACKAGE_DIR) -> str:
    """HEAD's commit of the checkout holding ``package_dir``, with ``-dirty`` when tracked files
    differ from it; "" when the package is not the top of a git checkout or git is missing."""
    def git(*args: str) -> str:
        # no optional locks: status would refresh the index under .git/index.lock, and every
        # worker asks once: a git command the user runs at that moment would fail
        return subprocess.run(["git", "--no-optional-locks", "-C", str(package_dir), *args],
                              capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if top != package_dir.parent:  # an installed copy inside some other repository
            return ""
        revision = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return revision + ("-dirty" if dirty else "")


@functools.cache
def code_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """Hex SHA-256 over the relative path and bytes of every code file of the package."""
    digest = hashlib.sha256()
    files = sorted(p for p in package_dir.rglob("*")
                   if p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts and p.is_file())
    for path in files:
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
