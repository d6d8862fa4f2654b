"""A quiet console for long commands: fairray's own lines on the terminal, everything else in <out>/logs/.

Ray's C++ core and raylet, Ray Data and Tune status lines, worker prints forwarded to the driver, MLflow and Python
warnings all write to the process's file descriptors 1 and 2 (or to processes that inherit them), not through one
Python logger; so the context points fds 1 and 2 at <out>/logs/console.log and gives fairray's two rich consoles
the saved terminal. Everything is kept, just not shown; `-v` leaves the console as it was.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console


@contextmanager
def quiet_console(logs: Path, consoles: tuple[Console, Console], enabled: bool = True) -> Iterator[Path | None]:
    """Within the block, fds 1/2 (and Python's sys.stdout/stderr) write to <logs>/console.log; `consoles`
    (stderr one, stdout one) keep the terminal. Yields the log file, or None when not enabled."""
    if not enabled:
        yield None
        return
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / "console.log"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    err_console, out_console = consoles
    term_out = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    term_err = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    root = logging.getLogger()
    handlers = list(root.handlers)
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        err_console.file, out_console.file = term_err, term_out
        # log records (Ray's Python loggers, fairray's warnings) go to the file too, with their level and origin
        file_handler = logging.FileHandler(logs / "python.log")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.handlers = [file_handler]
        logging.captureWarnings(True)
        try:
            yield path
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            logging.captureWarnings(False)
            root.handlers = handlers
            file_handler.close()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            err_console.file = out_console.file = None  # back to following sys.stderr / sys.stdout
            term_out.close()
            term_err.close()
