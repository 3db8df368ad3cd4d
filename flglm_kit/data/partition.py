"""Partitioners: which example indices each of ``num_clients`` federated clients holds.

Each returns ``list[list[int]]`` (client k's indices, ascending), covers every index exactly
once, and owns its random generator (``numpy.random.default_rng(seed)``), so the same seed
gives the same split whatever else the program has drawn.

Introduced in notebook 05 (IID and by site) and notebook 06 (Dirichlet label skew).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["dirichlet_partition", "iid_partition", "label_skew", "site_partition"]

Partition = list[list[int]]


def _check_clients(n: int, num_clients: int, min_size: int = 1) -> None:
    if num_clients < 1:
        raise ValueError(f"num_clients must be at least 1, got {num_clients}")
    if n < num_clients * min_size:
        raise ValueError(f"{n} examples cannot give {num_clients} clients {min_size} each")


def iid_partition(n: int, num_clients: int, *, seed: int) -> Partition:
    """Shuffle ``range(n)`` and deal it into ``num_clients`` parts whose sizes differ by at most 1.

    Args:
        n: number of examples.
        num_clients: number of clients.
        seed: seeds this call's own generator.

    Returns:
        Client k's indices (ascending), for k in ``range(num_clients)``.

    Raises:
        ValueError: if ``num_clients < 1`` or ``n < num_clients`` (a client would be empty).

    Introduced in notebook 05.

    Example:
        >>> [len(part) for part in iid_partition(10, 3, seed=0)]
        [4, 3, 3]
    """
    _check_clients(n, num_clients)
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(chunk.tolist()) for chunk in np.array_split(order, num_clients)]


def dirichlet_partition(labels: Sequence[Hashable], num_clients: int, *, alpha: float, seed: int,
                        min_size: int = 1) -> Partition:
    """Label-skewed split: each class is shared among clients in Dirichlet(alpha) proportions.

    The usual non-IID benchmark split (Hsu et al. 2019): small ``alpha`` (0.1) gives each
    client a few classes, large ``alpha`` (100) approaches IID, and ``alpha -> inf`` gives the
    even split (client sizes within 2 of each other).

    A class's share ``p_k * n_class`` is rarely a whole number, so the examples are dealt by
    *cumulative* apportionment: each client is owed the sum of its shares over the classes so
    far, and each class's examples go to the clients owed the most. Every client then ends
    within one example of what it is owed in total. (Rounding each class on its own, e.g. by
    ``floor(cumsum(p) * n_class)``, hands every rounding loss to the same clients: with many
    small classes and a huge ``alpha`` the first client got almost nothing.)

    A client left with fewer than ``min_size`` examples is topped up with random examples taken
    from the largest client, one at a time; this moves at most ``num_clients * min_size``
    examples and always terminates (resampling until every client is large enough may never
    end when classes are fewer than clients and ``alpha`` is small).

    Args:
        labels: one label per example (any hashable: bool, int, str).
        num_clients: number of clients.
        alpha: Dirichlet concentration, > 0.
        seed: seeds this call's own generator.
        min_size: the fewest examples any client may hold.

    Returns:
        Client k's indices (ascending), for k in ``range(num_clients)``.

    Raises:
        ValueError: for ``alpha <= 0``, ``num_clients < 1``, a negative ``min_size``, or fewer
            than ``num_clients * min_size`` labels.

    Planned for notebook 06.

    Example:
        >>> parts = dirichlet_partition(["a"] * 6 + ["b"] * 6, 3, alpha=0.5, seed=0, min_size=2)
        >>> sorted(i for part in parts for i in part) == list(range(12)), min(map(len, parts)) >= 2
        (True, True)
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    _check_clients(len(labels), num_clients, min_size)
    rng = np.random.default_rng(seed)
    by_class: dict[Hashable, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    parts: Partition = [[] for _ in range(num_clients)]
    owed = np.zeros(num_clients)  # (num_clients,): each client's summed shares so far
    # Classes in a fixed order (by repr: labels of mixed types do not sort), so the draws
    # below happen in the same order on every run.
    for label in sorted(by_class, key=repr):
        members = rng.permutation(by_class[label])
        shares = rng.dirichlet(np.full(num_clients, alpha))  # (num_clients,)
        owed += shares * len(members)
        held = np.array([len(part) for part in parts])  # (num_clients,)
        counts = _apportion(owed - held, len(members))  # (num_clients,)
        for part, chunk in zip(parts, np.split(members, np.cumsum(counts)[:-1])):
            part.extend(chunk.tolist())
    _top_up(parts, min_size, rng)
    return [sorted(part) for part in parts]


def _apportion(deficit: np.ndarray, total: int) -> np.ndarray:
    """Deal ``total`` units one at a time, each to the client with the largest remaining deficit.

    Ties go to the lower client index. Returns the (num_clients,) counts, summing to ``total``.
    """
    counts = np.clip(np.floor(deficit), 0, total).astype(np.int64)  # whole units owed
    while counts.sum() > total:  # over-dealt (deficits of other clients were negative)
        owned = np.where(counts > 0, deficit - counts, np.inf)
        counts[int(np.argmin(owned))] -= 1
    while counts.sum() < total:  # the fractional remainders, largest first
        counts[int(np.argmax(deficit - counts))] += 1
    return counts


def _top_up(parts: Partition, min_size: int, rng: np.random.Generator) -> None:
    """Move random examples from the largest client to any client below ``min_size``."""
    while True:
        small = min(range(len(parts)), key=lambda k: len(parts[k]))
        if len(parts[small]) >= min_size:
            return
        large = max(range(len(parts)), key=lambda k: len(parts[k]))
        parts[small].append(parts[large].pop(int(rng.integers(len(parts[large])))))


def site_partition(sites: Sequence[str]) -> Partition:
    """One client per site (hospital): client k holds the records of ``sorted(set(sites))[k]``.

    Args:
        sites: each record's site, e.g. ``[ex.meta["site"] for ex in examples]``.

    Returns:
        Client k's indices (ascending); ``num_clients`` is the number of distinct sites.

    Raises:
        ValueError: for an empty list.

    Not called directly in a notebook yet.

    Example:
        >>> site_partition(["north", "east", "north"])  # east is client 0, north client 1
        [[1], [0, 2]]
    """
    if not sites:
        raise ValueError("no sites to partition")
    names = sorted(set(sites))
    client = {name: k for k, name in enumerate(names)}
    parts: Partition = [[] for _ in names]
    for index, site in enumerate(sites):
        parts[client[site]].append(index)
    return parts


def label_skew(partition: Sequence[Sequence[int]], labels: Sequence[Hashable]) -> float:
    """Mean total-variation distance between each client's label mix and the global one.

    0 means every client sees the global label distribution; it grows towards 1 as clients
    specialise. Empty clients are skipped.

    Args:
        partition: client index lists, as the partitioners return.
        labels: one label per example.

    Returns:
        The mean over non-empty clients of ``0.5 * sum_c |p_client(c) - p_global(c)|``.

    Raises:
        ValueError: if every client is empty.

    Planned for notebook 06.

    Example:
        >>> label_skew([[0, 1], [2, 3]], ["a", "a", "b", "b"])  # each client: one class of two
        0.5
    """
    overall = Counter(labels)
    total = sum(overall.values())
    distances = []
    for part in partition:
        if not part:
            continue
        counts = Counter(labels[i] for i in part)
        distances.append(0.5 * sum(abs(counts[c] / len(part) - overall[c] / total)
                                   for c in overall))
    if not distances:
        raise ValueError("every client is empty")
    return float(np.mean(distances))
