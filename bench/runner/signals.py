"""SIGTERM as an exception in the driver, so a terminated run ends like an interrupted one: finished chunks kept,
workers stopped, the manifest saying ``interrupted``, exit status 143 (Ctrl-C: 130)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Terminated(BaseException):
    """The driver received SIGTERM."""

    exit_code = 143


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
