"""Owned output folders: a marker of the liftlab command that wrote a folder, and a lock while it
is written.

Every folder that ``synth build`` or ``evalhub score`` writes carries ``.liftlab-folder.json``
(:class:`Marker`: which command, what it holds, whether it is complete) and, while a command writes
it, an exclusive ``flock`` on ``.liftlab.lock``. The lock belongs to the writing process: the
kernel releases it when that process ends, however it ends, so a killed build can be resumed and
two writers can never share a folder. The commands use these to refuse a second writer, to clear
only folders liftlab wrote, and to refuse a folder that holds something else.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synth.io import atomic_write_text

MARKER = ".liftlab-folder.json"
LOCK = ".liftlab.lock"
KINDS = ("build", "run", "lift", "corrections")
STATES = ("writing", "complete")


class FolderError(RuntimeError):
    """A folder a command may not write: in use, not liftlab's, or holding something else (named)."""


@dataclass
class Marker:
    """What a liftlab folder holds.

    Attributes:
        kind: ``"build"`` (a ``synth build``), ``"run"`` (an ``evalhub score`` run), ``"lift"``
            (``evalhub lift`` cut-outs) or ``"corrections"`` (``raters corrections export``).
        command: the command line's name, e.g. ``"synth build"``.
        identity: what makes the content what it is (a build's recipe fingerprint and dataset name;
            a run's release, dataset and settings).
        state: ``"writing"`` until the command finished, then ``"complete"``.
        updated_at: ISO 8601 UTC time of the last change.
    """

    kind: str
    command: str
    identity: dict[str, Any] = field(default_factory=dict)
    state: str = "writing"
    updated_at: str = ""


def read_marker(folder: str | Path) -> Marker | None:
    """The marker of ``folder``, or None when it has none.

    Raises:
        FolderError: an unreadable or malformed marker (named).
    """
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        marker = Marker(**doc)
    except (OSError, ValueError, TypeError) as exc:
        raise FolderError(f"{path}: unreadable liftlab marker ({exc})") from None
    if marker.kind not in KINDS or marker.state not in STATES:
        raise FolderError(f"{path}: unknown kind {marker.kind!r} or state {marker.state!r}")
    return marker


def write_marker(folder: str | Path, marker: Marker) -> None:
    """Write ``marker`` into ``folder`` atomically (stamping ``updated_at``)."""
    marker.updated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_text(Path(folder) / MARKER, json.dumps(asdict(marker), indent=2, sort_keys=True))


def foreign_entries(folder: str | Path) -> list[str]:
    """Names in ``folder`` other than liftlab's marker and lock (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name not in (MARKER, LOCK))


def ensure_folder(folder: str | Path, option: str = "--out") -> Path:
    """Create ``folder`` (and parents) for writing.

    Raises:
        FolderError: it exists as a file, or cannot be created (read-only, no space), named.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{option} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FolderError(f"{option} {folder}: cannot create the folder ({exc.strerror})") from None
    return folder


@contextmanager
def locked(folder: str | Path) -> Iterator[None]:
    """Hold the folder's write lock for the ``with`` block.

    Raises:
        FolderError: another process holds it (its pid named), or the lock file cannot be made.
    """
    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise FolderError(f"{folder}: cannot create its lock file ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise FolderError(f"{folder} is being written by another liftlab command (pid {holder}); wait for it or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)  # also for worker processes forked with the descriptor
    finally:
        os.close(fd)
