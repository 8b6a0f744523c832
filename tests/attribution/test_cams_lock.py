"""find_target_layer holds the module's lock only while it runs, even when it fails."""

from __future__ import annotations

import threading

import pytest
import torch

from safeview.attribution.cams import find_target_layer


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )


def test_a_failing_hook_registration_does_not_keep_the_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = _net()
    example = torch.zeros(1, 3, 8, 8)
    expected = find_target_layer(net, example)
    original = torch.nn.Module.register_forward_hook
    calls = {"n": 0}

    def fail_once(self: torch.nn.Module, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:  # after one hook is in place
            raise RuntimeError("hook registration failed")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.nn.Module, "register_forward_hook", fail_once)
    with pytest.raises(RuntimeError, match="hook registration failed"):
        find_target_layer(net, example)
    assert not net[0]._forward_hooks  # the hook added before the failure is gone

    found: list[torch.nn.Module] = []
    worker = threading.Thread(target=lambda: found.append(find_target_layer(net, example)))
    worker.daemon = True  # a deadlocked thread must not keep the test run alive
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "a second call deadlocked on the module lock"
    assert found == [expected]
