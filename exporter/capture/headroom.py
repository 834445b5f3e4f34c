"""Stack lent to a capture that ran out of it near the recursion limit.

An error raised a few frames below ``sys.getrecursionlimit()`` leaves the capture too little
stack to count it. The capture front then borrows :data:`STACK_HEADROOM` more frames (the
limit raised, one borrower at a time) and retries once. The limit is given back as soon as
the stack allows it: by the borrower when it returns, or else by the next worker tick
(Python refuses a limit below the current depth, and the borrower is as deep as the app
was; the worker's stack is shallow).
"""

from __future__ import annotations

import sys
import threading

STACK_HEADROOM = 250  # frames added to the recursion limit for the retry

# The borrower raises the limit inline (see CaptureFront.capture): with no stack left, even a
# call to a function here would fail; only C calls (lock, list, sys) are free of frames.
LOCK = threading.Lock()  # one borrower at a time
LENT: list[int] = []  # the limit before it was raised, until it is given back


def give_back_borrowed() -> None:
    """The borrower is done: put the limit back if this stack allows it, and let go of
    :data:`LOCK` (which the borrower acquired)."""
    try:
        _restore()
    finally:
        LOCK.release()


def give_back() -> None:
    """What a borrower could not put back (the worker's tick calls this)."""
    if LENT and LOCK.acquire(blocking=False):
        try:
            _restore()
        finally:
            LOCK.release()


def _restore() -> None:
    if LENT:
        try:
            sys.setrecursionlimit(LENT[0])
            LENT.clear()
        except RecursionError:
            pass  # too deep here: the worker's tick gives it back
