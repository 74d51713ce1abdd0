"""The one retry rule: doubling delays with jitter, a cap, Retry-After as a floor."""

from __future__ import annotations

import pytest

from zwmd.backoff import Backoff


def test_delays_double_within_their_jitter_up_to_the_cap() -> None:
    backoff = Backoff(1.0, 8.0)
    for base in [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]:
        delay = backoff.next()
        assert base / 2 <= delay <= base
    assert backoff.failures == 6


def test_jitter_spreads_clients_that_failed_together() -> None:
    delays = {Backoff(1.0, 8.0).next() for _ in range(50)}
    assert len(delays) > 40
    assert min(delays) >= 0.5
    assert max(delays) <= 1.0


def test_retry_after_is_a_floor_and_a_success_starts_again() -> None:
    backoff = Backoff(0.5, 30.0)
    assert backoff.next(retry_after=12.0) == 12.0
    assert backoff.next(retry_after=0.0) <= 1.0  # a shorter Retry-After changes nothing
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next() <= 0.5


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_an_impossible_range_is_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial, maximum)
