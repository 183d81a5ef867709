"""The grid codec: exact round trips for sizes seen in training, sound decoding of arbitrary arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netsynth.codecs.grid import C_DIR, C_MASK, C_SIZE, N_CHANNELS, GridCodec
from test_contract import tiny_flows


@pytest.fixture(scope="module")
def flows():
    return tiny_flows(n_per_class=30, width=8, seed=3)


@pytest.fixture(scope="module")
def codec(flows):
    return GridCodec.fit(flows)


@pytest.mark.parametrize("snap", [True, False])
def test_round_trip_is_exact(flows, codec, snap):
    grid = codec.encode(flows)
    assert grid.shape == (len(flows), flows.max_packets, N_CHANNELS)
    assert grid.min() >= -1 and grid.max() <= 1
    dec = codec.decode(grid, flows.label, snap_sizes=snap, protocol=flows.protocol)
    np.testing.assert_array_equal(dec["n_packets"], flows.n_packets)
    np.testing.assert_array_equal(dec["payload_len"], flows.payload_len)
    np.testing.assert_array_equal(dec["direction"], flows.direction)
    np.testing.assert_array_equal(dec["tcp_flags"], flows.tcp_flags)
    np.testing.assert_allclose(dec["iat"], flows.iat, rtol=1e-4, atol=1e-7)


def test_padding_is_constant(flows, codec):
    grid = codec.encode(flows)
    assert np.all(grid[~flows.mask] == -1)


def test_json_round_trip(flows, codec):
    again = GridCodec.from_dict(json.loads(json.dumps(codec.to_dict())))
    np.testing.assert_array_equal(again.encode(flows), codec.encode(flows))


def test_decode_any_array_is_valid(flows, codec):
    rng = np.random.default_rng(0)
    grid = rng.normal(0, 2, size=(200, flows.max_packets, N_CHANNELS))
    labels = rng.choice(flows.classes, 200)
    dec = codec.decode(grid, labels)
    assert dec["clipped"]["grid_outside_range"] > 0
    assert dec["n_packets"].min() >= 1 and dec["n_packets"].max() <= flows.max_packets
    assert set(np.unique(dec["direction"])) <= {0, 1}
    assert np.all(dec["iat"] >= 0) and np.all(dec["iat"][:, 0] == 0)
    for c in flows.classes:  # snapped sizes are sizes that class used in training
        assert set(np.unique(dec["payload_len"][labels == c])) <= set(codec.sizes_by_class[c]) | {0}
    kept = np.arange(flows.max_packets)[None, :] < dec["n_packets"][:, None]
    for d in (0, 1):
        used = dec["tcp_flags"][(dec["direction"] == d) & kept]
        assert set(np.unique(used)) <= set(codec.flags_by_direction[d])


def test_length_from_first_negative_mask(codec, flows):
    grid = np.full((3, flows.max_packets, N_CHANNELS), 0.5)
    grid[0, 4:, C_MASK] = -0.2  # length 4
    grid[1, :, C_MASK] = -1  # nothing kept -> at least one packet
    grid[2, 2, C_MASK] = -1  # a hole ends the flow even if later positions look kept
    grid[..., C_DIR] = -0.3
    grid[..., C_SIZE] = codec.scale_size(np.array([518]))[0]  # beta uses 517 + 1
    dec = codec.decode(grid, ["beta"] * 3)
    np.testing.assert_array_equal(dec["n_packets"], [4, 1, 2])
    assert np.all(dec["direction"] == 0)
    assert dec["payload_len"][0, 0] == 518
