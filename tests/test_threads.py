"""``safeview.threads.budget_threads``: each check in a fresh interpreter, since torch's inter-op
pool and numba's pool can be sized only once per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from safeview.threads import available_cores, thread_budget


def _run(code: str, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    environ.update(env)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_budget_sets_torch_numba_and_the_environment_before_numba_is_imported() -> None:
    got = _run(
        """
        import json, os, subprocess, sys, torch
        from safeview.threads import budget_threads
        n = budget_threads(3)
        import numba
        show = "import os; print(os.environ['OMP_NUM_THREADS'])"
        child = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True)
        names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
        print(json.dumps({"n": n, "torch": torch.get_num_threads(),
                          "interop": torch.get_num_interop_threads(),
                          "numba": numba.get_num_threads(),
                          "numba_pool": numba.config.NUMBA_NUM_THREADS,
                          "env": {k: os.environ[k] for k in names},
                          "child": child.stdout.strip()}))
        """
    )
    assert got == {
        "n": 3,
        "torch": 3,
        "interop": 3,
        "numba": 3,
        "numba_pool": 3,
        "env": {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "NUMBA_NUM_THREADS": "3"},
        "child": "3",
    }


def test_budget_is_clamped_to_numbas_pool_once_numba_is_imported() -> None:
    # numba's pool was sized 1 at import: asking for 4 must neither raise nor touch its variable
    # (numba's compiler raises if NUMBA_NUM_THREADS changes after its threads started).
    got = _run(
        """
        import json, os, numba, numpy as np, torch
        @numba.njit(parallel=True)
        def total(x):
            s = 0.0
            for i in numba.prange(x.size):
                s += x[i]
            return s
        total(np.ones(10))  # threads launched
        from safeview.threads import budget_threads
        n = budget_threads(4)
        @numba.njit
        def again(x):
            return x + 1
        again(1)  # compiles: re-reads numba's config
        print(json.dumps({"n": n, "torch": torch.get_num_threads(),
                          "numba": numba.get_num_threads(),
                          "env": os.environ["NUMBA_NUM_THREADS"]}))
        """,
        NUMBA_NUM_THREADS="1",
    )
    assert got == {"n": 4, "torch": 4, "numba": 1, "env": "1"}


def test_budget_lowers_numba_when_already_imported_and_defaults_to_a_share_of_cores() -> None:
    got = _run(
        """
        import json, numba, torch
        from safeview.threads import budget_threads
        small = budget_threads(0)
        numba_small = numba.get_num_threads()
        share = budget_threads(None, workers=2)
        crowded = budget_threads(None, workers=10_000)
        print(json.dumps({"small": small, "numba_small": numba_small, "share": share,
                          "crowded": crowded, "torch": torch.get_num_threads()}))
        """,
        NUMBA_NUM_THREADS="2",
    )
    assert got == {
        "small": 1,
        "numba_small": 1,
        "share": max(1, available_cores() // 2),
        "crowded": 1,
        "torch": 1,
    }


@pytest.mark.parametrize("value", [-3, 0])
def test_budget_never_goes_below_one_thread(value: int) -> None:
    got = _run(
        f"""
        import json, torch
        from safeview.threads import budget_threads
        print(json.dumps({{"n": budget_threads({value}), "torch": torch.get_num_threads()}}))
        """
    )
    assert got == {"n": 1, "torch": 1}


@pytest.mark.parametrize(("value", "expected"), [("3", 3), ("0", 1), ("many", None), (None, None)])
def test_thread_budget_reads_the_environment(
    value: str | None, expected: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert thread_budget() == (available_cores() if expected is None else expected)
