"""Training on pixel datasets larger than memory: stream the file's chunks in shuffled order.

A pixel dataset is a compressed netCDF chunked along ``sample`` (1024 samples a chunk,
gpvae.io.pixels): random batches would decompress a whole chunk for every few samples. A
:class:`ChunkSampler` orders an epoch chunk by chunk instead: the chunks holding training
samples are shuffled, taken ``buffer`` at a time, and the samples of those chunks shuffled
together and cut into batches; :class:`~gpvae.data.dataset.PixelDataset` keeps the last
chunks it decoded (``cache_chunks``), so each chunk is read once per epoch, sequentially
within it. The order depends on ``(seed, epoch)`` only: a resumed run sees the same batches.
:func:`training_sampler` picks this sampler when a sensor is too large for ``in_memory_mb``
(else the in-memory :class:`~gpvae.data.dataset.BlockSampler`, as before).
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

from gpvae.data.dataset import BlockSampler, PixelDataset

#: Chunks shuffled together (the buffer) by default: a batch mixes samples of this many
#: chunks (4 x 1024 samples).
BUFFER_CHUNKS = 4


class ChunkSampler(BlockSampler):
    """Index blocks (one per batch) that visit the file chunk by chunk (see the module
    docstring); ``chunk``: samples per file chunk; ``buffer``: chunks shuffled together."""

    def __init__(self, indices: np.ndarray, batch_size: int, *, chunk: int,
                 buffer: int = BUFFER_CHUNKS, seed: int = 0) -> None:
        super().__init__(np.sort(np.asarray(indices, dtype=np.int64)), batch_size,
                         shuffle=True, seed=seed)
        self.chunk, self.buffer = int(chunk), int(buffer)
        _, starts = np.unique(self.indices // self.chunk, return_index=True)
        self.members = np.split(self.indices, starts[1:])

    def order(self) -> np.ndarray:
        """This epoch's sample order: groups of ``buffer`` shuffled chunks, shuffled within."""
        if self.indices.size == 0:
            return self.indices
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(len(self.members))
        groups = [np.concatenate([self.members[c] for c in perm[g:g + self.buffer]])
                  for g in range(0, perm.size, self.buffer)]
        return np.concatenate([rng.permutation(g) for g in groups])


def training_sampler(dataset: PixelDataset, indices: np.ndarray, batch_size: int, *,
                     seed: int, window: int | None = None,
                     groups: np.ndarray | None = None) -> Sampler:
    """The training sampler: :class:`BlockSampler` (full shuffle, or ``window``s of
    consecutive samples) when every sensor fits ``in_memory_mb`` or when ``groups`` (the
    coarse cells of :meth:`PixelDataset.sampling_groups`) must stay together; else a
    :class:`ChunkSampler` over the file's chunks (``window`` samples shuffled together,
    default :data:`BUFFER_CHUNKS` chunks), with the dataset's chunk cache sized to match."""
    chunk = dataset.on_disk_chunk()
    if chunk is None or groups is not None:
        return BlockSampler(indices, batch_size, shuffle=True, seed=seed, window=window,
                            groups=groups)
    buffer = max(1, -(-int(window) // chunk)) if window else BUFFER_CHUNKS
    dataset.cache_chunks = 2 * buffer + 1  # a batch may straddle two buffers
    return ChunkSampler(indices, batch_size, chunk=chunk, buffer=buffer, seed=seed)
