"""Python's cycle collector paused over one bulk write.

A batch of thousands of alerts allocates hundreds of thousands of short-lived objects (rows,
parameters, results) that reference counting frees as it goes. The cycle collector, triggered by
the allocation count alone, meanwhile walks everything the batch holds over and over, so a batch
ten times larger took well over ten times as long. It is paused for the batch and collects as
usual after it: what the batch leaves in cycles is found then, so memory stays bounded.

The pause is the whole process's, every thread's garbage included: it is only for a block that
cannot wait on anything else (not for one that may wait on another transaction's locks).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cycle collection inside the block (already paused: left as it is)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
