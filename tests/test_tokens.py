"""Refreshing tokens before they expire, never looping on an expired one."""

from __future__ import annotations

import pytest

from zwmd.tokens import ExpiringToken, Fetched

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_token_is_reused_until_shortly_before_expiry_then_fetched_again() -> None:
    clock = Clock()
    issued: list[str] = []

    async def fetch() -> Fetched[str]:
        issued.append(f"t{len(issued)}")
        return Fetched(issued[-1], clock.now + 12 * 3600)  # ECR: 12 hours

    token = ExpiringToken(fetch, refresh_margin=900, clock=clock)
    assert (await token.get()).value == "t0"
    clock.now += 11 * 3600
    assert (await token.get()).value == "t0"
    clock.now += 3600 - 899  # within 15 minutes of expiry
    assert (await token.get()).value == "t1"
    assert token.fetches == 2


async def test_a_short_lived_token_is_refreshed_at_half_its_life() -> None:
    clock = Clock()

    async def fetch() -> Fetched[str]:
        return Fetched("short", clock.now + 600)

    token = ExpiringToken(fetch, refresh_margin=900, minimum_ttl=10, clock=clock)
    await token.get()
    assert token.refresh_at == clock.now + 300


async def test_an_already_expired_token_is_kept_for_the_minimum_not_fetched_in_a_loop() -> None:
    clock = Clock()

    async def fetch() -> Fetched[str]:
        return Fetched("stale", 1_420_070_400.0)  # 2015, as moto answers

    token = ExpiringToken(fetch, minimum_ttl=60, clock=clock)
    for _ in range(100):
        assert (await token.get()).value == "stale"
    assert token.fetches == 1
    clock.now += 61
    await token.get()
    assert token.fetches == 2
    token.forget()
    await token.get()
    assert token.fetches == 3
