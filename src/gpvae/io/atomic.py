"""Atomic writes: write to a temporary sibling path, then rename over the target."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gpvae.io.failures import free_bytes, out_of_space, out_of_space_error


def _tag() -> str:
    """Host and process id in temporary names: ``.<name>.<host>-<pid>.<random>.tmp``."""
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    return f"{host}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove temporary siblings ``.<name>.*.tmp`` of ``target`` left by a killed writer.

    Kept: those of a process of this host that is still running (another writer). Others
    (a dead process, another host, an older name without a tag) are removed: Snakemake's lock
    lets one job at a time write an output. Returns the removed paths.
    """
    target = Path(target)
    removed = []
    here = _tag().rsplit("-", 1)[0]
    name = re.compile(rf"\.{re.escape(target.name)}\.(?:(?P<host>[^.]+)-(?P<pid>\d+)\.)?"
                      r"[a-z0-9_]{8}\.tmp")
    for tmp in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
        m = name.fullmatch(tmp.name)
        if m is None:
            continue
        if m["host"] == here and (int(m["pid"]) == os.getpid() or _alive(int(m["pid"]))):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    On any exception the temporary file or folder is removed, so a failed job never leaves a
    half-written output behind; temporaries of a killed job (kill -9 leaves no chance to
    clean up) are removed when the same output is written again. A write that fails because
    the disk is full raises an InputError saying so.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    prefix = f".{target.name}.{_tag()}."
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
        os.close(fd)
        os.unlink(name)
        tmp = Path(name)
    try:
        yield tmp
        if directory and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException as err:
        # Before the temporary is removed (and frees its space).
        no_space, free = out_of_space(err, target.parent), free_bytes(target.parent)
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        if no_space:
            raise out_of_space_error(err, target, free) from err
        raise
