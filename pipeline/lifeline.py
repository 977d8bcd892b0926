"""Child processes that must not outlive their parent (copy workers).

Linux delivers a chosen signal to a process when its parent dies if the
process asked for it with ``prctl(PR_SET_PDEATHSIG, sig)`` (through ctypes:
no extra package). The request is made first thing in the child; if the parent
already died before that, the child exits at once. Where ``prctl`` does not
exist, :func:`parent_alive` is the liveness check a loop can poll instead.

The snapshot keeper is different on purpose (it outlives an orderly exit of its
coordinator so a rerun can resume): it polls :func:`process_alive`, see
:mod:`pipeline.keeper`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies; exit now if it already has.

    Returns False where the platform has no parent-death signal (then poll :func:`parent_alive`).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        ok = libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        ok = False
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
    return ok


def parent_alive(parent_pid: int) -> bool:
    return os.getppid() == parent_pid


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return fields[0] != b"Z"
    except (OSError, IndexError):
        return True
