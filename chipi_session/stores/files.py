"""Files a store owns: path checks, I/O errors as ``BACKEND_UNAVAILABLE``, durable renames."""

from __future__ import annotations

import os
import sys

from ..errors import ChipiSessionError, ErrorCode
from ..validate import check_path
from .codec import _invalid


def _io_error(doing: str, path: str, exc: OSError) -> ChipiSessionError:
    reason = exc.strerror or type(exc).__name__
    return ChipiSessionError(
        ErrorCode.BACKEND_UNAVAILABLE, f"session store {path}: cannot {doing}: {reason}", True
    )


def _store_file(path: object, what: str) -> str:
    """The absolute path of a store's file: a valid path that is not a directory."""
    absolute = os.path.abspath(check_path(path, what))
    if os.path.isdir(absolute):
        raise _invalid(f"{what} {absolute} is a directory, not a file")
    return absolute


def _fsync_dir(directory: str) -> None:
    """Make a rename durable: the directory entry lives in the directory's own blocks."""
    if sys.platform == "win32":  # pragma: no cover - directories cannot be opened there
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
