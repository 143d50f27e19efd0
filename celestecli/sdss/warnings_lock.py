"""The lock the FITS readers that run in threads hold around ``warnings.catch_warnings()``.

``catch_warnings`` swaps the process-wide filter list and puts the old one back on exit, so two
threads inside such blocks at once (a field's frames are read in parallel) can undo each other's
filters: a truncated file's warning that should be an error may pass, and a warning one thread
silenced shows up in another's output.  Holding this lock makes the blocks take turns.
"""

import threading

FITS_WARNINGS_LOCK = threading.RLock()
