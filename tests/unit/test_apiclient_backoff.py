"""The one back-off: growth, cap, jitter bounds, reset; the per-key restart back-off."""

from __future__ import annotations

import pytest

from apiclient.backoff import Backoff, KeyedBackoff


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(initial=0.2, maximum=7.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 7.0]
    assert backoff.failures == 7 and backoff.last_delay == 7.0


@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999])
def test_jitter_stretches_upwards_and_never_past_the_cap(draw: float) -> None:
    backoff = Backoff(initial=1.0, maximum=3.0, jitter=0.5, rng=lambda: draw)
    first, second, third = (backoff.next_delay() for _ in range(3))
    assert first == pytest.approx(1.0 * (1 + 0.5 * draw))
    assert second == pytest.approx(min(3.0, 2.0 * (1 + 0.5 * draw)))
    assert third == 3.0


def test_reset_starts_over() -> None:
    backoff = Backoff(initial=0.1, maximum=5.0, jitter=0.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.failures == 0 and backoff.next_delay() == 0.1


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(initial=0.1, maximum=5.0, jitter=0.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 5.0


@pytest.mark.parametrize("options", [
    {"initial": 0, "maximum": 1}, {"initial": 2, "maximum": 1},
    {"initial": 1, "maximum": 2, "factor": 0.5}, {"initial": 1, "maximum": 2, "jitter": -1},
])
def test_settings_that_cannot_work_are_refused(options: dict) -> None:
    with pytest.raises(ValueError):
        Backoff(**options)


async def test_sleep_waits_the_delay_it_returns() -> None:
    backoff = Backoff(initial=0.01, maximum=0.02, jitter=0.0)
    assert await backoff.sleep() == 0.01


def test_keyed_backoff_first_attempt_is_free_then_doubles_from_the_last_finish() -> None:
    keyed = KeyedBackoff(initial=10, maximum=30, reset_after=600)
    assert keyed.remaining("uid/app", now=100) == 0
    keyed.attempted("uid/app", now=100)
    assert keyed.remaining("uid/app", now=104) == 6
    assert keyed.remaining("uid/app", now=104, since=103) == 9
    keyed.attempted("uid/app", now=110)
    keyed.attempted("uid/app", now=130)
    assert keyed.current_delay("uid/app") == 30  # 10 -> 20 -> capped at 30


def test_keyed_backoff_forgets_long_runs_and_whole_pods() -> None:
    keyed = KeyedBackoff(initial=10, maximum=300, reset_after=600)
    keyed.attempted("a/one", now=0)
    keyed.attempted("a/two", now=0)
    keyed.attempted("b/one", now=0)
    keyed.ran_for("a/one", 599)
    assert keyed.current_delay("a/one") == 10
    keyed.ran_for("a/one", 600)
    assert keyed.current_delay("a/one") == 0
    keyed.forget_prefix("a/")
    assert (keyed.current_delay("a/two"), keyed.current_delay("b/one")) == (0, 10)
