"""Tests for flglm_kit.data.partition: determinism, coverage, sizes, skew, and private RNGs.

Prepare / Execute / Assert.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from flglm_kit.data import (
    dirichlet_partition, iid_partition, label_skew, load_clinic_notes, site_partition,
)

# 3,000 labels of three classes in a 3:2:1 mix: a skew that IID cannot hide.
LABELS = ["routine"] * 1500 + ["urgent"] * 1000 + ["emergency"] * 500


def covers(partition: list[list[int]], n: int) -> bool:
    """Every index in range(n) exactly once."""
    flat = [i for part in partition for i in part]
    return len(flat) == n and sorted(flat) == list(range(n))


@pytest.mark.parametrize("n,num_clients", [(10, 3), (100, 7), (5, 5), (1000, 1)])
def test_iid_covers_everything_with_sizes_within_one(n, num_clients):
    parts = iid_partition(n, num_clients, seed=0)
    sizes = [len(part) for part in parts]
    assert len(parts) == num_clients and covers(parts, n)
    assert max(sizes) - min(sizes) <= 1
    assert all(part == sorted(part) for part in parts)


def test_iid_is_deterministic_per_seed():
    assert iid_partition(50, 4, seed=3) == iid_partition(50, 4, seed=3)
    assert iid_partition(50, 4, seed=3) != iid_partition(50, 4, seed=4)


def test_iid_rejects_empty_clients():
    with pytest.raises(ValueError, match="cannot give 4 clients 1 each"):
        iid_partition(3, 4, seed=0)
    with pytest.raises(ValueError, match="num_clients must be at least 1"):
        iid_partition(3, 0, seed=0)


def test_dirichlet_is_deterministic_and_covers_everything():
    a = dirichlet_partition(LABELS, 5, alpha=0.5, seed=1)
    assert a == dirichlet_partition(LABELS, 5, alpha=0.5, seed=1)
    assert a != dirichlet_partition(LABELS, 5, alpha=0.5, seed=2)
    assert covers(a, len(LABELS)) and len(a) == 5


def test_small_alpha_is_more_skewed_than_large_alpha():
    # Mean total-variation distance to the global mix, averaged over seeds to be robust.
    def skew(alpha: float) -> float:
        return float(np.mean([label_skew(dirichlet_partition(LABELS, 6, alpha=alpha, seed=s),
                                         LABELS) for s in range(5)]))

    small, medium, large = skew(0.1), skew(1.0), skew(100.0)
    assert small > medium > large
    assert small > 0.3 and large < 0.05  # near one class per client vs. near IID
    assert label_skew(iid_partition(len(LABELS), 6, seed=0), LABELS) < 0.05


@pytest.mark.parametrize("labels", [LABELS, list(range(50)) * 3, [0, 1] * 7],
                         ids=["3 large classes", "50 classes of 3", "2 classes of 7"])
def test_huge_alpha_gives_the_even_split(labels):
    # alpha -> inf means every class is shared evenly, so the clients come out the IID sizes.
    # Before, each class's rounding loss went to client 0: 50 classes of 3 gave [1, 49, 50, 50].
    for seed in range(3):
        sizes = [len(part) for part in dirichlet_partition(labels, 4, alpha=1e6, seed=seed)]
        assert max(sizes) - min(sizes) <= 2, (seed, sizes)


def test_small_alpha_gives_unequal_clients_and_seeds_repeat():
    parts = dirichlet_partition(LABELS, 6, alpha=0.1, seed=0)
    sizes = [len(part) for part in parts]
    assert max(sizes) > 3 * min(sizes), sizes
    assert parts == dirichlet_partition(LABELS, 6, alpha=0.1, seed=0)
    assert dirichlet_partition(LABELS, 6, alpha=1e6, seed=0) == dirichlet_partition(LABELS, 6, alpha=1e6, seed=0)


@pytest.mark.parametrize("min_size", [1, 20])
def test_dirichlet_respects_min_size_even_with_tiny_alpha(min_size):
    # With 3 classes, 10 clients and alpha = 0.01 most clients draw nothing: the top-up fills them.
    parts = dirichlet_partition(LABELS, 10, alpha=0.01, seed=0, min_size=min_size)
    assert covers(parts, len(LABELS))
    assert min(len(part) for part in parts) >= min_size


def test_dirichlet_accepts_any_hashable_labels_and_checks_arguments():
    parts = dirichlet_partition([True, False] * 20, 2, alpha=1.0, seed=0)
    assert covers(parts, 40)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        dirichlet_partition(LABELS, 2, alpha=0.0, seed=0)
    with pytest.raises(ValueError, match="cannot give 4 clients 3 each"):
        dirichlet_partition([0] * 10, 4, alpha=1.0, seed=0, min_size=3)


def test_site_partition_keeps_each_site_together():
    # Prepare: the clinic notes' sites (datasheet: 4 sites, train sizes per site).
    sites = [ex.meta["site"] for ex in load_clinic_notes("train")]
    # Execute
    parts = site_partition(sites)
    # Assert: client k is the k-th site by name, and holds exactly that site's records.
    names = sorted(set(sites))
    assert names == ["bramblewood", "corvale", "northgate", "st_aldric"]
    assert [len(part) for part in parts] == [800, 800, 1400, 1000]
    assert covers(parts, len(sites))
    for name, part in zip(names, parts):
        assert {sites[i] for i in part} == {name}
    with pytest.raises(ValueError, match="no sites"):
        site_partition([])


def test_partitioners_never_touch_global_random_state():
    np_state, py_state = np.random.get_state(), random.getstate()
    iid_partition(100, 3, seed=0)
    dirichlet_partition(LABELS, 4, alpha=0.3, seed=0)
    assert random.getstate() == py_state
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(np.random.get_state(), np_state))


def test_label_skew_hand_checked():
    # Global mix: a 3/4, b 1/4. Client 0 = {a, a}: |1 - 3/4| + |0 - 1/4| = 1/2, halved: 0.25.
    # Client 1 = {a, b}: |1/2 - 3/4| + |1/2 - 1/4| = 1/2, halved: 0.25. Mean 0.25.
    labels = ["a", "a", "a", "b"]
    assert label_skew([[0, 1], [2, 3]], labels) == pytest.approx(0.25)
    assert label_skew([[0, 1, 2, 3], []], labels) == 0.0  # the empty client is skipped
    assert Counter(labels)["a"] == 3
    with pytest.raises(ValueError, match="every client is empty"):
        label_skew([[], []], labels)
