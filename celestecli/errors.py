"""Exception hierarchy of celeste and the exit code each maps to (ARCHITECTURE.md 1).

Library code raises these; ``cli.py`` turns them into messages and exit codes in one place.
Each class also subclasses the matching builtin so callers can catch either.
"""

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3


class CelesteError(Exception):
    """Base class of every error celeste raises on purpose."""

    exit_code = EXIT_RUNTIME


class UsageError(CelesteError, ValueError):
    """The user asked for something malformed (exit 2)."""

    exit_code = EXIT_USAGE


class InputFileError(CelesteError, OSError):
    """An input file is missing, unreadable, truncated or malformed; names the file."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DownloadError(CelesteError, OSError):
    """A file could not be fetched after all retries; names the URL."""

    def __init__(self, url, problem):
        self.url = url
        self.problem = problem
        super().__init__(f"{url}: {problem}")


class BatchFailure(CelesteError):
    """Some work items of a batch failed; lists each with its reason."""

    def __init__(self, failures: dict[str, str], n_total: int):
        self.failures = dict(failures)
        self.n_total = n_total
        lines = [f"{len(failures)} of {n_total} failed:"]
        lines += [f"  {name}: {why}" for name, why in failures.items()]
        super().__init__("\n".join(lines))


class PartialFailure(BatchFailure):
    """Some work items failed while the others succeeded (exit 3)."""

    exit_code = EXIT_PARTIAL


class AllFailed(BatchFailure):
    """Every work item of a batch failed (exit 1)."""

