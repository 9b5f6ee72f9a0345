"""The raw event encoding shared by the recording cores.

A recording is a flat ``array('q')`` of events, three int64 words each:
``(head, time_ns, aux)`` where ``head = kind | thread << KIND_BITS | ref << REF_SHIFT``.

=========  ==========================  ===========================================
kind       ref                         aux
=========  ==========================  ===========================================
CALL       function index              index of the argument tuple, or -1
RESUME     function index              string index of the asyncio task, or -1
EXTERNAL   function index              -1 (a call out of the scope, Python or C)
RETURN     0                           string index of the return value, or -1
YIELD      0                           string index of the yielded value, or -1
RAISE      0                           exception slot (filled in when known)
=========  ==========================  ===========================================

A closing event (RETURN, YIELD, RAISE) closes the innermost open call of its
thread. ``time_ns`` is the core's monotonic clock; the recording carries the
(monotonic, unix) pair taken at start to convert it.
"""

from __future__ import annotations

CALL = 1
RESUME = 2
EXTERNAL = 3
RETURN = 4
YIELD = 5
RAISE = 6

OPENING = (CALL, RESUME, EXTERNAL)
KIND_BITS = 4
KIND_MASK = (1 << KIND_BITS) - 1
THREAD_BITS = 20
THREAD_MASK = (1 << THREAD_BITS) - 1
REF_SHIFT = KIND_BITS + THREAD_BITS
WORDS = 3


def head(kind: int, thread: int, ref: int = 0) -> int:
    """Pack the first word of an event."""
    return kind | (thread << KIND_BITS) | (ref << REF_SHIFT)
