"""What a run over many fields tells its user: a line per field, a summary, the exit status."""

import logging
import time
from collections import Counter

from celestecli.errors import EXIT_USAGE, AllFailed, CelesteError, PartialFailure, UsageError
from celestecli.parallel.jobs import BUSY, DONE, FAILED, SKIPPED, Outcome
from celestecli.parallel.status import StatusWriter

log = logging.getLogger("celestecli.infer")


class FieldFailed(CelesteError):
    """The only field of a run failed; keeps that failure's exit status."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class RunReport:
    """Collects the outcomes of a run: logs each, appends it to the status file, sums up."""

    def __init__(self, status: StatusWriter, n_fields: int):
        self.status = status
        self.n_fields = n_fields
        self.outcomes: list[Outcome] = []
        self.started = time.perf_counter()

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.status.write(outcome.record())
        if outcome.status == FAILED:
            log.error("%s", outcome.describe())
        else:
            log.info("%s", outcome.describe())

    def summary(self) -> str:
        counts = Counter(o.status for o in self.outcomes)
        seconds = time.perf_counter() - self.started
        noun = "field" if self.n_fields == 1 else "fields"
        text = (f"{self.n_fields} {noun}: {counts[DONE]} done, {counts[SKIPPED]} up to date, "
                f"{counts[BUSY]} busy in another run, {counts[FAILED]} failed; {seconds:.1f} s")
        if counts[DONE]:
            text += f" ({counts[DONE] / seconds * 3600:.0f} fields/hour)"
        missing = self.n_fields - len(self.outcomes)
        if missing:
            text += f"; {missing} not finished"
        return text

    def finish(self) -> None:
        """Log the summary; raise the error that gives the run's exit status, if any."""
        failed = [o for o in self.outcomes if o.status == FAILED]
        (log.warning if failed else log.info)("summary: %s", self.summary())
        if not failed:
            return
        failures = {o.field: o.error or "failed" for o in failed}
        if len(failed) < self.n_fields:
            raise PartialFailure(failures, self.n_fields)
        if self.n_fields == 1:
            if failed[0].exit_code == EXIT_USAGE:
                raise UsageError(failed[0].error or "failed")
            raise FieldFailed(failed[0].error or "failed", failed[0].exit_code)
        raise AllFailed(failures, self.n_fields)
