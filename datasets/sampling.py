"""A resumable training sampler: each epoch's order and each item's random draws are keyed by (seed, epoch, position)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["KeyedRandomSampler", "item_generator", "item_substream"]


def item_generator(key: int | tuple[int, int]) -> tuple[int, torch.Generator | None]:
    """Split a dataset key into (index, its own CPU generator), or (index, None) for a plain int.

    Args:
        key: an index, or ``(index, draw_seed)`` as :class:`KeyedRandomSampler` yields.

    Returns:
        ``(index, generator)``: the generator is seeded by ``draw_seed``, so an item's random
        draws (which sim frame, crops, flips) depend only on its key, not on which worker or
        process makes it, nor on what ran before.
    """
    if isinstance(key, (tuple, list)):
        index, seed = int(key[0]), int(key[1])
        return index, torch.Generator().manual_seed(seed)
    return int(key), None


def item_substream(key: int | tuple[int, int], salt: int) -> torch.Generator | None:
    """An item's own generator for a wrapper's extra draws, apart from the base item's.

    Args:
        key: as for :func:`item_generator`.
        salt: a constant per wrapper, so two wrappers of one item draw different streams.

    Returns:
        A generator seeded by the item's first draw XOR ``salt`` (None for a plain int key:
        torch's global RNG then draws).
    """
    _, g = item_generator(key)
    if g is not None:
        g.manual_seed(int(torch.randint(2**62, (1,), generator=g).item()) ^ int(salt))
    return g


class KeyedRandomSampler(Sampler[tuple[int, int]]):
    """Shuffled positions with a draw seed each, both a function of (seed, epoch): resumable anywhere.

    Epoch ``e`` visits ``randperm(n)`` (drawn from ``seed`` and ``e``) and gives position ``p`` the
    draw seed ``draws[p]`` from the same stream; rank ``r`` of ``world`` takes positions
    ``r, r + world, ...``. ``progress()`` says, when an iteration starts, how many batches the run
    has trained (its global step): the epoch is that over the batches an epoch holds, and the
    batches already trained in it are skipped, so a resumed run sees exactly the items an
    uninterrupted run would have seen, wherever it stopped (Lightning's own epoch counter can
    re-run an epoch that a checkpoint on its last batch finished; the data does not). Lightning's ``DistributedSampler`` replacement must be off
    (``use_distributed_sampler=False``): this sampler shards itself.

    Args:
        n: dataset length.
        seed: the run's seed.
        batch_size: items per batch (to turn skipped batches into items).
        progress: ``() -> batches trained so far`` (the global step; one batch per iteration);
            None: the epoch from :meth:`set_epoch`, no skip.
        rank, world: this process's shard.

    Example:
        >>> s = KeyedRandomSampler(10, seed=0, batch_size=2)
        >>> len(list(s)) == len(s) == 10
        True
    """

    def __init__(self, n: int, seed: int, batch_size: int = 1,
                 progress: Callable[[], int] | None = None, rank: int = 0, world: int = 1) -> None:
        if n < 1 or batch_size < 1 or world < 1 or not 0 <= rank < world:
            raise ValueError(f"need n >= 1, batch_size >= 1, 0 <= rank < world; got {n}, {batch_size}, {rank}, {world}")
        self.n, self.seed, self.batch_size = int(n), int(seed), int(batch_size)
        self.progress, self.rank, self.world = progress, int(rank), int(world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch, when no ``progress`` is given (Lightning calls this at each epoch start)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.world

    def keys(self, epoch: int) -> list[tuple[int, int]]:
        """This rank's ``(index, draw_seed)`` keys of ``epoch``, in order."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch * 7_919) % (2**63 - 1))
        perm = torch.randperm(self.n, generator=g)
        draws = torch.randint(0, 2**62, (self.n,), generator=g)
        positions = range(self.rank, self.rank + len(self) * self.world, self.world)
        return [(int(perm[p]), int(draws[p])) for p in positions]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.progress is None:
            epoch, done = self.epoch, 0
        else:  # the data position is the number of batches trained: epoch and offset follow
            epoch, done = divmod(int(self.progress()), max(1, len(self) // self.batch_size))
        yield from self.keys(epoch)[done * self.batch_size:]
