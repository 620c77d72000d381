"""Training data streamed by file chunks (gpvae.data.stream) and run ids from content."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from fixtures_pixels import S1_BANDS, S2_BANDS, write_pixels

from gpvae.data.checkpoint import read_checkpoint
from gpvae.data.dataset import BlockSampler, PixelDataset, dataset_fingerprint
from gpvae.data.stream import ChunkSampler, training_sampler
from gpvae.train.loop import run_id, train_model

BANDS = {"S2": S2_BANDS, "S1_ASC": S1_BANDS}
CHUNK = 8


@pytest.fixture(scope="module")
def chunked(tmp_path_factory) -> Path:
    """A pixel dataset of 60 samples stored in compressed chunks of 8 samples."""
    d = tmp_path_factory.mktemp("stream")
    src = write_pixels(d / "raw.nc", n_samples=60, years=(2021, 2022),
                       sensors=("S2", "S1_ASC"), seed=2)
    with xr.open_dataset(src) as ds:
        ds = ds.load()
    enc = {v: {"zlib": True, "chunksizes": (CHUNK, *ds[v].shape[1:])}
           for v in ds.data_vars if v.startswith(("values_", "truth_"))}
    ds.to_netcdf(d / "pixels.nc", encoding=enc)
    return d / "pixels.nc"


def test_chunk_sampler_order_depends_on_seed_and_epoch_only():
    idx = np.r_[3:40, 50:77]  # a split: not every sample of every chunk
    a, b = ChunkSampler(idx, 5, chunk=8, buffer=2, seed=4), ChunkSampler(idx, 5, chunk=8,
                                                                         buffer=2, seed=4)
    a.set_epoch(2)
    b.set_epoch(2)
    order = a.order()
    assert np.array_equal(order, b.order()) and sorted(order.tolist()) == idx.tolist()
    assert len(list(a)) == len(a) == -(-idx.size // 5)
    # the samples of 2 chunks are consumed before any other chunk is touched
    chunks = []
    for k in order // 8:
        if k not in chunks:
            chunks.append(int(k))
    groups = [set(chunks[i:i + 2]) for i in range(0, len(chunks), 2)]
    pos = 0
    for g in groups:
        n = sum(int(np.sum(idx // 8 == c)) for c in g)
        assert set((order[pos:pos + n] // 8).tolist()) == g
        pos += n
    b.set_epoch(3)
    assert not np.array_equal(b.order(), order)
    assert not np.array_equal(ChunkSampler(idx, 5, chunk=8, seed=5).order(),
                              ChunkSampler(idx, 5, chunk=8, seed=4).order())


def test_chunk_reads_equal_memory_reads_and_decode_each_chunk_once(chunked):
    with PixelDataset(chunked, BANDS, in_memory_mb=1e6) as mem, \
            PixelDataset(chunked, BANDS, in_memory_mb=0) as disk:
        assert mem.on_disk_chunk() is None and disk.on_disk_chunk() == CHUNK
        sampler = training_sampler(disk, disk.indices("train"), 6, seed=0)
        assert isinstance(sampler, ChunkSampler) and disk.cache_chunks == 9
        assert isinstance(training_sampler(mem, mem.indices("train"), 6, seed=0),
                          BlockSampler)
        touched = np.unique(disk.indices("train") // CHUNK).size
        for epoch in range(2):
            sampler.set_epoch(epoch)
            before = disk.chunk_reads
            for batch in sampler:
                for s in BANDS:
                    np.testing.assert_array_equal(disk.read(s, batch), mem.read(s, batch))
            reads = disk.chunk_reads - before  # at most once per epoch (cache hits aside)
            assert reads == touched * len(BANDS) if epoch == 0 else reads <= touched * 2


def _cfg(**train) -> dict:
    return {"type": "gpvae", "prior": "markov", "sensors": ["S2", "S1_ASC"], "latent_dim": 2,
            "hidden": 8, "train": {"epochs": 2, "batch_size": 6, "lr": 0.01, "seed": 0,
                                   "patience": 0, **train}}


def test_streamed_training_resumes_exactly(chunked, tmp_path):
    cfg = _cfg(in_memory_mb=0)
    train_model(chunked, "m", cfg, tmp_path / "straight", device="cpu")
    train_model(chunked, "m", cfg, tmp_path / "killed", device="cpu", max_epochs=1)
    train_model(chunked, "m", cfg, tmp_path / "killed", device="cpu")
    a, b = (read_checkpoint(tmp_path / d / "checkpoint.pt")["model_state"]
            for d in ("straight", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_id_follows_the_content_not_the_file(chunked, tmp_path):
    copy = tmp_path / "scratch" / "pixels.nc"
    copy.parent.mkdir()
    shutil.copy(chunked, copy)  # a new path and modification time
    assert run_id("m", _cfg(), copy) == run_id("m", _cfg(), chunked)
    with xr.open_dataset(chunked) as ds:
        ds = ds.load()
    ds["values_S2"][0, 0, 0] = 0.5  # other content
    ds.to_netcdf(tmp_path / "other.nc")
    assert run_id("m", _cfg(), tmp_path / "other.nc") != run_id("m", _cfg(), chunked)
    ds.attrs["content_sha256"] = "abc"  # a writer's recorded digest is used as it is
    ds.to_netcdf(tmp_path / "recorded.nc")
    assert dataset_fingerprint(tmp_path / "recorded.nc") == "abc"


def test_pixel_writers_record_their_content(tmp_path):
    from gpvae.io.pixels import merge_pixels

    a = write_pixels(tmp_path / "a.nc", n_samples=10, sensors=("S2",), seed=1)
    merged = merge_pixels([a], tmp_path / "m.nc", chunk=4)
    again = merge_pixels([a], tmp_path / "m2.nc", chunk=7)
    with xr.open_dataset(merged) as m, xr.open_dataset(again) as m2:
        assert m.attrs["content_sha256"] == m2.attrs["content_sha256"]  # chunking aside
        assert len(m.attrs["content_sha256"]) == 64
