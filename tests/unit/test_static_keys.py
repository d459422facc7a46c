"""The static key ring: a key is found by its digest whatever its shape, and one of a managed key's shape that no
static key has is refused without being hashed against the static keys (the managed ring hashes it)."""

from __future__ import annotations

import pytest

from sluice.errors import AuthenticationFailed
from sluice.keys.hashing import KEY_LENGTH, KEY_PREFIX
from sluice.keys.static import StaticKeyRing

PEPPER = b"a-pepper-for-tests-only-32-bytes"
pytestmark = pytest.mark.anyio
MANAGED_SHAPED = KEY_PREFIX + "x" * (KEY_LENGTH - len(KEY_PREFIX))


async def test_a_static_key_is_found_and_another_refused() -> None:
    ring = StaticKeyRing(["sk-plain-static"], pepper=PEPPER)
    assert (await ring.authenticate("sk-plain-static")).key_id.startswith("key-")
    assert ring.find(MANAGED_SHAPED) is None
    with pytest.raises(AuthenticationFailed):
        await ring.authenticate("sk-plain-other")


async def test_a_static_key_of_a_managed_keys_shape_still_works() -> None:
    ring = StaticKeyRing(["sk-plain-static", MANAGED_SHAPED], pepper=PEPPER)
    found = ring.find(MANAGED_SHAPED)
    assert found is not None and found.key_id != (await ring.authenticate("sk-plain-static")).key_id
    assert ring.find(KEY_PREFIX + "y" * (KEY_LENGTH - len(KEY_PREFIX))) is None
