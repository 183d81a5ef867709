"""Explicit randomness: library code never touches global RNG state."""

from __future__ import annotations

import numpy as np

RandomState = int | np.random.Generator | None


def as_generator(random_state: RandomState) -> np.random.Generator:
    """Turn an int, None or an existing Generator into a `np.random.Generator`."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def derive_seed(rng: np.random.Generator) -> int:
    """Draw a 63-bit seed from `rng`, for seeding a torch.Generator or a child process."""
    return int(rng.integers(0, 2**63 - 1))
