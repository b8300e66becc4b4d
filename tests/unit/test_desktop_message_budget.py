"""The desktop socket's message budget: at most N messages in any minute-long window."""

from __future__ import annotations

import pytest

from ivr_engine.desktop.config import DesktopConfig
from ivr_engine.desktop.ws import MessageBudget


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def taken(budget: MessageBudget, clock: Clock, times: list[float]) -> list[bool]:
    out = []
    for at in times:
        clock.now = at
        out.append(budget.take())
    return out


def test_n_messages_pass_then_the_next_is_refused() -> None:
    clock = Clock(600.0)
    budget = MessageBudget(3, clock)
    assert taken(budget, clock, [600.0, 600.1, 600.2, 600.3]) == [True, True, True, False]


def test_a_burst_across_a_minute_boundary_is_still_limited() -> None:
    """Three at the end of one minute and three right after: the window still holds the
    first three, so the fourth to sixth are refused (counting per clock minute would
    allow all six)."""
    clock = Clock(659.0)
    budget = MessageBudget(3, clock)
    times = [659.0, 659.5, 659.9, 660.1, 660.2, 660.3]
    assert taken(budget, clock, times) == [True, True, True, False, False, False]


def test_the_budget_comes_back_as_the_window_moves() -> None:
    clock = Clock(600.0)
    budget = MessageBudget(2, clock)
    assert taken(budget, clock, [600.0, 600.0, 659.9]) == [True, True, False]
    assert taken(budget, clock, [660.0, 660.0, 660.0]) == [True, True, False]  # a minute on
    assert taken(budget, clock, [1000.0, 1000.0]) == [True, True]  # long idle: all back


def test_the_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="max_socket_messages_per_minute"):
        DesktopConfig(max_socket_messages_per_minute=0)
