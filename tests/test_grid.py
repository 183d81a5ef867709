"""The grid codec: exact round trips for sizes seen in training, sound decoding of arbitrary arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netsynth.codecs.grid import C_DIR, C_MASK, C_SIZE, N_CHANNELS, GridCodec
from netsynth.errors import InputError
from test_contract import tiny_flows


@pytest.fixture(scope="module")
def flows():
    return tiny_flows(n_per_class=30, width=8, seed=3)


@pytest.fixture(scope="module")
def codec(flows):
    return GridCodec.fit(flows)


@pytest.mark.parametrize("transform", ["quantile", "log"])
@pytest.mark.parametrize("snap", [True, False])
def test_round_trip_is_exact(flows, snap, transform):
    codec = GridCodec.fit(flows, size_transform=transform)
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
    import dataclasses

    unfloored = dataclasses.replace(codec, min_packets={})  # the mask alone (floor: next test)
    dec = unfloored.decode(grid, ["beta"] * 3)
    np.testing.assert_array_equal(dec["n_packets"], [4, 1, 2])
    assert np.all(dec["direction"] == 0)
    assert dec["payload_len"][0, 0] == 518


def test_quantile_table_is_the_training_cdf(flows, codec):
    sizes = flows.payload_len[flows.mask]
    values, counts = np.unique(sizes, return_counts=True)
    assert codec.size_transform == "quantile"
    assert codec.size_values == values.tolist()
    np.testing.assert_allclose(codec.size_edges, np.cumsum(counts) / counts.sum())
    # each training size maps to the middle of its CDF interval, so the scaled values are spread evenly
    points = codec.scale_size(values).astype(np.float64)
    lower = np.concatenate([[0.0], codec.size_edges[:-1]])
    np.testing.assert_allclose((points + 1) / 2, (lower + np.asarray(codec.size_edges)) / 2, atol=1e-6)
    assert np.all(np.diff(points) > 0)


def test_inverse_cdf_lands_on_training_sizes_in_proportion(flows, codec):
    """Any value decodes to a training size; a uniform value picks each size with its training frequency."""
    v = np.linspace(-1, 1, 200_001)
    got = codec.unscale_size(v)
    sizes = flows.payload_len[flows.mask]
    values, counts = np.unique(sizes, return_counts=True)
    assert set(np.unique(got).astype(int)) <= set(values.tolist())
    share = np.array([(got == x).mean() for x in values])
    np.testing.assert_allclose(share, counts / counts.sum(), atol=1e-4)


def test_quantile_unseen_sizes_encode_between_neighbours(codec):
    values = np.asarray(codec.size_values)
    gaps = np.flatnonzero(np.diff(values) > 1)
    assert len(gaps)
    i = gaps[0]
    lo, mid, hi = codec.scale_size(np.array([values[i], values[i] + 1, values[i + 1]]))
    assert lo < mid < hi
    assert codec.scale_size(np.array([10_000]))[0] == codec.scale_size(values[-1:])[0]  # clamped at the ends


def test_json_round_trip_keeps_quantile_tables(flows, codec):
    again = GridCodec.from_dict(json.loads(json.dumps(codec.to_dict())))
    assert again == codec
    grid = np.random.default_rng(1).uniform(-1, 1, size=(50, flows.max_packets, N_CHANNELS))
    labels = np.asarray(flows.classes * 50)[:50]
    for snap in (True, False):
        a, b = (c.decode(grid, labels, snap_sizes=snap) for c in (codec, again))
        np.testing.assert_array_equal(a["payload_len"], b["payload_len"])


def test_codec_saved_before_quantile_loads_as_log(flows):
    old = GridCodec.fit(flows, size_transform="log").to_dict()
    for key in ("size_transform", "size_values", "size_edges"):
        old.pop(key)
    codec = GridCodec.from_dict(old)
    assert codec.size_transform == "log"
    want = 2 * np.log1p(np.array([0.0, 100.0, 1480.0])) / np.log1p(1480) - 1
    np.testing.assert_allclose(codec.scale_size(np.array([0, 100, 1480])), want, rtol=1e-6)


def test_unknown_size_transform_is_rejected(flows):
    with pytest.raises(InputError):
        GridCodec.fit(flows, size_transform="rank")


@pytest.fixture(scope="module")
def class_codec(flows):
    return GridCodec.fit(flows, size_transform="class_quantile")


@pytest.mark.parametrize("snap", [True, False])
def test_class_quantile_round_trip_is_exact(flows, class_codec, snap):
    grid = class_codec.encode(flows)
    assert grid.min() >= -1 and grid.max() <= 1
    dec = class_codec.decode(grid, flows.label, snap_sizes=snap, protocol=flows.protocol)
    np.testing.assert_array_equal(dec["payload_len"], flows.payload_len)
    np.testing.assert_array_equal(dec["n_packets"], flows.n_packets)


def test_class_quantile_decodes_to_the_class_position_sizes(flows, class_codec):
    """Any grid decodes, at each position, to a size that class used there in training."""
    rng = np.random.default_rng(2)
    grid = rng.uniform(-1, 1, size=(300, flows.max_packets, N_CHANNELS))
    grid[..., C_MASK] = 1.0
    labels = rng.choice(flows.classes, 300)
    dec = class_codec.decode(grid, labels)
    train_labels = flows.label.astype(str)
    checked = 0
    for c in flows.classes:
        for j in range(flows.max_packets):
            kept = (train_labels == c) & flows.mask[:, j]
            if not kept.any():
                continue
            got = set(np.unique(dec["payload_len"][labels == c, j]))
            assert got <= set(np.unique(flows.payload_len[kept, j]))
            checked += 1
    assert checked > len(flows.classes)
    # the two classes' tables differ, so the same grid decodes differently per class
    a = class_codec.decode(grid, [flows.classes[0]] * 300)["payload_len"]
    b = class_codec.decode(grid, [flows.classes[1]] * 300)["payload_len"]
    assert not np.array_equal(a, b)


def test_class_quantile_json_round_trip(flows, class_codec):
    again = GridCodec.from_dict(json.loads(json.dumps(class_codec.to_dict())))
    assert again == class_codec
    np.testing.assert_array_equal(again.encode(flows), class_codec.encode(flows))


def test_class_quantile_unknown_class_uses_global_table(flows, class_codec):
    grid = np.zeros((4, flows.max_packets, N_CHANNELS))
    dec = class_codec.decode(grid, ["never-seen"] * 4)
    assert set(np.unique(dec["payload_len"])) <= set(class_codec.size_values)


def test_class_direction_round_trip_and_shares(flows):
    codec = GridCodec.fit(flows, size_transform="class_quantile", class_direction=True)
    grid = codec.encode(flows)
    assert grid.min() >= -1 and grid.max() <= 1
    dec = codec.decode(grid, flows.label, protocol=flows.protocol)
    np.testing.assert_array_equal(dec["direction"], flows.direction)
    np.testing.assert_array_equal(dec["payload_len"], flows.payload_len)
    again = GridCodec.from_dict(json.loads(json.dumps(codec.to_dict())))
    assert again == codec
    # a uniform value in the direction channel decodes to 1 with the class's training share per position
    c = flows.classes[0]
    v = np.linspace(-1, 1, 20_001)[:, None, None] * np.ones((1, flows.max_packets, N_CHANNELS))
    v[..., C_MASK] = 1.0
    got = codec.decode(v, [c] * len(v))["direction"].mean(axis=0)
    rows = flows.label.astype(str) == c
    for j in range(flows.max_packets):
        if flows.mask[rows, j].any():
            assert got[j] == pytest.approx(flows.direction[rows, j][flows.mask[rows, j]].mean(), abs=1e-3)



def test_decoded_flows_are_never_shorter_than_the_class_shortest_training_flow(flows):
    """A mask that ends early (here: at once) decodes to the class's shortest training length, counted;
    codecs saved before the floor existed keep the old floor of 1."""
    codec = GridCodec.fit(flows, size_transform="class_quantile")
    labels = flows.label.astype(str)
    want = {c: int(flows.n_packets[labels == c].min()) for c in flows.classes}
    assert codec.min_packets == want and max(want.values()) > 1
    grid = codec.encode(flows)
    grid[:, :, C_MASK] = -1.0  # every flow "ends" before its first packet
    dec = codec.decode(grid, flows.label, protocol=flows.protocol)
    np.testing.assert_array_equal(dec["n_packets"], [want[c] for c in labels])
    assert dec["clipped"]["below_training_min_packets"] == sum(v > 0 for v in dec["n_packets"])
    assert codec.decode(codec.encode(flows), flows.label)["clipped"]["below_training_min_packets"] == 0
    old = dict(codec.to_dict())
    del old["min_packets"]
    assert (GridCodec.from_dict(old).decode(grid, flows.label)["n_packets"] == 1).all()
    assert GridCodec.from_dict(json.loads(json.dumps(codec.to_dict()))) == codec
