"""Writing a text file through a temporary one beside it, and whether a temporary file that an
interrupted write left behind is abandoned: for the checkpoints (utils/checkpoints.py), the
exercise notebooks (utils/exercises.py) and the generated modules (utils/export.py) alike. Its
name carries the writer's process id: `<name>.<pid>.tmp`."""

from __future__ import annotations

import os
import time
from pathlib import Path

STILL_WRITING_S = 3600  # a file this recent, of a process that exists, may be a write in progress


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it, so that `path` is never left
    half-written."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def abandoned(tmp: Path) -> bool:
    """Whether the temporary file `tmp` (`<name>.<pid>.tmp`) belongs to no write in progress: its
    process is gone, or the file is over an hour old (its pid may now be another process's). A
    folder so named is no write's: it is never abandoned (yours, left alone)."""
    if not tmp.is_file():
        return False
    pid = tmp.suffixes[-2][1:] if len(tmp.suffixes) >= 2 else ""
    if not (pid.isdigit() and _process_exists(int(pid))):
        return True
    return time.time() - tmp.stat().st_mtime >= STILL_WRITING_S


def _process_exists(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; a pid beyond any there can be
        return False
    except PermissionError:
        return True
    return True


def require_path(must: str, path) -> Path:
    """`path` as a Path; a clear TypeError for None, bytes or an int (`must`: what it must be)."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{must}, got {path!r}")
    return Path(path)
