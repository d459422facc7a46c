"""Many requests with one managed key at once, when none of them finds it cached (the first ones, and all those in
flight whenever its cache entry expires): they share one lookup, and each is answered and charged as if alone."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.integration.test_keys_admin import admin, assert_refused, chat, create

pytestmark = pytest.mark.anyio
__all__ = ["admin"]  # the fixture, imported for the tests below

AT_ONCE = 25


async def test_requests_that_miss_the_cache_together_are_each_admitted_and_charged(admin: httpx.AsyncClient
                                                                                   ) -> None:
    created = await create(admin, limits={"requests_per_minute": 20})  # creating it empties the key cache
    replies = await asyncio.gather(*(chat(admin, created["key"]) for _ in range(AT_ONCE)))
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [200] * 20 + [429] * (AT_ONCE - 20)  # the burst is the minute's quota, one unit each
    served = [reply for reply in replies if reply.status_code == 200]
    assert {reply.headers["ratelimit-policy"] for reply in served} == {'"key";q=20;w=60'}
    assert sorted(int(reply.headers["x-ratelimit-remaining"]) for reply in served) == list(range(20))


async def test_requests_with_an_unknown_key_at_once_are_all_refused(admin: httpx.AsyncClient) -> None:
    unknown = "sk-sluice-" + "x" * 43
    for reply in await asyncio.gather(*(chat(admin, unknown) for _ in range(AT_ONCE))):
        assert_refused(reply)


async def test_a_key_revoked_while_requests_wait_is_refused_afterwards(admin: httpx.AsyncClient) -> None:
    created = await create(admin)
    first = await asyncio.gather(*(chat(admin, created["key"]) for _ in range(AT_ONCE)))
    assert {reply.status_code for reply in first} == {200}
    assert (await admin.post(f"/admin/keys/{created['id']}/revoke")).status_code == 200
    for reply in await asyncio.gather(*(chat(admin, created["key"]) for _ in range(AT_ONCE))):
        assert_refused(reply)
