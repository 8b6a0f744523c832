"""Thread budgets for processes that share a machine's cores.

torch and numba (BASS) each start one thread per core by default. Several such processes side by
side (service workers, Ray actors, parallel batch jobs) then run more threads than there are cores:
on 2 cores, two processes segmenting with BASS took 4x as long per image as one alone instead of
the 2x that sharing the cores costs. :func:`budget_threads` gives a process its share.
"""

from __future__ import annotations

import contextlib
import os
import sys

#: Environment variables read by the thread pools of torch (OpenMP/MKL), numpy's BLAS and numba,
#: in this process (when the library is imported later) and in every child process.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def thread_budget() -> int:
    """The compute threads this process may use: ``OMP_NUM_THREADS`` where it is set (as
    :func:`budget_threads` and a caller's environment set it), else :func:`available_cores`.

    Runtimes that size their own pools (onnxruntime sessions, MediaPipe's XNNPACK delegate) read
    this when they are built, so a process given one thread runs its detectors on one thread.
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    try:
        return max(1, int(value))
    except ValueError:
        return available_cores()


def budget_threads(n: int | None = None, *, workers: int = 1) -> int:
    """Limit this process's compute threads to ``n`` and return the number set.

    ``None`` means this process's share of the cores: ``available_cores() // workers``. The result
    is at least 1. Sets, in this order:

    - the environment variables in :data:`THREAD_ENV_VARS`, for child processes and for libraries
      imported later (numba sizes its pool from ``NUMBA_NUM_THREADS`` once, at import, and fails
      if it changes afterwards, so that one is left alone once numba is imported);
    - ``torch.set_num_threads`` and, while torch still allows it (before any parallel work),
      ``torch.set_num_interop_threads``;
    - if numba is already imported, ``numba.set_num_threads``, clamped to the pool size fixed at
      its import (numba refuses more). That call only applies to the calling thread, so call this
      function before numba is imported where possible (at process start).
    """
    share = available_cores() // max(1, workers) if n is None else n
    threads = max(1, int(share))
    for name in THREAD_ENV_VARS:
        if name == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            # Fixed at import: numba's compiler re-reads it and raises once its threads have
            # been launched with another value.
            continue
        os.environ[name] = str(threads)

    import torch

    torch.set_num_threads(threads)
    # Allowed only once, and before any inter-op parallel work started.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)

    if "numba" in sys.modules:
        import numba

        pool = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        numba.set_num_threads(min(threads, pool))
    return threads
