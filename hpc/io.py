"""Atomic file writes: write under a temporary name in the same folder, then rename.

A reader (or a resubmitted job) never sees a half-written file: the final name appears only
when the content is complete. Stale temporaries of killed writers are removed by `clean_stale`.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

TMP_MARK = ".tmp-"


def temp_name(path: Path) -> Path:
    """A hidden temporary sibling of `path`, unique per host and process."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write; on success rename it to `path`, on failure remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path, text: str):
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def clean_stale(path) -> list[Path]:
    """Remove the temporaries left by writers that no longer run (killed jobs) in `path`'s folder.

    Every temporary of this host whose process is gone goes, whatever file it was for; a
    temporary of another host is removed only for `path` itself (two jobs never write one file
    at once, but jobs on other nodes may be writing other files of the folder right now).
    """
    removed = []
    path = Path(path)
    if not path.parent.is_dir():
        return removed
    me = socket.gethostname()
    for p in path.parent.glob(f".*{TMP_MARK}*"):
        target, _, tag = p.name.rpartition(TMP_MARK)
        host, _, pid = tag.rpartition("-")
        if host == me and pid.isdigit():
            if _alive(int(pid)):
                continue
        elif target != f".{path.name}":
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
