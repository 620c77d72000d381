"""Library failures turned into the project's error: unreadable files and a full disk.

Readers wrap their opens and reads in :func:`reading`: a truncated, empty or garbage file
(GDAL/rasterio, pyogrio, netCDF/HDF5, parquet, zip, CSV parser errors) becomes an
:class:`~gpvae.errors.InputError` naming the file and the fix, never a library traceback.
Writers (:func:`gpvae.io.atomic.atomic_path`) ask :func:`out_of_space` whether a failed write
was the disk filling up: netCDF reports that as "NetCDF: HDF error", without a word of space.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

from gpvae.errors import InputError

#: errno values that mean "no room left" (disk full, quota exceeded).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: A write that fails while less than this is free on the target's disk is reported as
#: out of space (HDF5 and GDAL lose the errno on the way up).
LOW_SPACE_BYTES = 64 * 2**20
#: Exception types a library raises for a file it cannot read or parse.
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, RuntimeError, EOFError, KeyError, IndexError, UnicodeError,
    zipfile.BadZipFile)
#: Libraries whose own exception classes all mean "cannot read this file".
READER_LIBRARIES = ("rasterio", "pyogrio", "fiona", "netCDF4", "h5py", "h5netcdf", "pyarrow",
                    "zarr", "pandas.errors")


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from or during."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_read_error(err: BaseException) -> bool:
    """Whether ``err`` is a library's way of saying a file cannot be read or parsed."""
    if isinstance(err, InputError):
        return False
    module = type(err).__module__ or ""
    return isinstance(err, READ_ERRORS) or module.startswith(READER_LIBRARIES)


def short(err: BaseException, limit: int = 300) -> str:
    """One line of an exception: its type and the start of its message."""
    text = " ".join(str(err).split()) or type(err).__name__
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}"


@contextlib.contextmanager
def reading(path: object, *, what: str = "file", field: str | None = None,
            fix: str | None = None) -> Iterator[None]:
    """Turn a library's read or parse failure inside the block into an InputError naming
    ``path`` (``what`` says what kind of file it should be)."""
    try:
        yield
    except Exception as err:
        if not is_read_error(err):
            raise
        if isinstance(err, FileNotFoundError) or "No such file or directory" in str(err):
            raise InputError(f"{what} not found", file=path, field=field,
                             fix="check the path in the config") from err
        raise InputError(f"cannot read {what} ({short(err)})", file=path, field=field,
                         fix=fix or f"the file is truncated, empty or not a {what}: "
                                    "replace it with a complete copy") from err


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes free for this user on the disk holding ``path`` (None when unknown)."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def no_space_errno(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it came from) is ENOSPC / EDQUOT."""
    return any(isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS
               or "No space left on device" in str(e) for e in _chain(err))


def out_of_space(err: BaseException, where: str | os.PathLike) -> bool:
    """Whether a write near ``where`` that failed with ``err`` failed for lack of space:
    an ENOSPC/EDQUOT in the chain, or an I/O-like failure while the disk is (nearly) full."""
    if isinstance(err, InputError) or not isinstance(err, Exception):
        return False
    if no_space_errno(err):
        return True
    if not isinstance(err, OSError | RuntimeError) and not is_read_error(err):
        return False
    free = free_bytes(where)
    return free is not None and free < LOW_SPACE_BYTES


def out_of_space_error(err: BaseException, target: str | os.PathLike,
                       free: int | None = None) -> InputError:
    """The InputError saying a write of ``target`` ran out of disk space (``free``: bytes
    free when it failed)."""
    free = free_bytes(target) if free is None else free
    left = "" if free is None else f", {free / 2**20:.1f} MiB free"
    return InputError(f"out of disk space while writing ({short(err, 160)}{left})",
                      file=target, field="disk space",
                      fix="free space on that disk (or point `results:` at a larger one), "
                          "then rerun: the half-written file was removed")
