"""`random_hex`: the same ids as the f-string it replaced writes from the same random bits."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.ids import random_hex


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 2**32), st.sampled_from([4, 8, 64, 96, 128, 192, 256]))
def test_an_id_is_the_bits_as_zero_padded_lowercase_hex(seed: int, bits: int) -> None:
    random.seed(seed)
    written = random_hex(bits)
    random.seed(seed)
    assert written == f"{random.getrandbits(bits):0{bits // 4}x}"
    assert len(written) == bits // 4
