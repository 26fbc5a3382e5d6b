"""kubelet's atomic writer: a volume's files change all at once, never half-written.

A volume directory written here looks like kubelet's::

    <dir>/..2026_01_02_15_04_05.123456789/key    the data, in a timestamped directory
    <dir>/..data -> ..2026_01_02_15_04_05.123456789
    <dir>/key -> ..data/key                     what the container sees

An update writes a complete new timestamped directory, points a ``..data_tmp`` symlink at
it and renames that over ``..data`` (``rename(2)`` is atomic), so a reader following
``key`` sees either every old file or every new one. Then user-visible names that left
the payload are removed, and so is the old timestamped directory. A payload equal to what
is on disk (same bytes and modes, same names) writes nothing: calling ``write`` on every
pod worker pass costs a few reads.

Paths are checked as kubelet does: relative, no ``..`` element, not starting with ``..``,
names at most 255 characters, paths at most 4096.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_NAME = "..data"
NEW_DATA_DIR_NAME = "..data_tmp"
MAX_PATH_LENGTH = 4096
MAX_FILE_NAME_LENGTH = 255


class PayloadError(ValueError):
    """A payload path that may not be written (absolute, ``..``, too long)."""


@dataclass(frozen=True)
class FileProjection:
    """One file of a volume: its bytes and its permission bits."""

    data: bytes
    mode: int = 0o644


def validate_path(path: str) -> str:
    """The cleaned relative path, or PayloadError saying why it may not be written."""
    if not path:
        raise PayloadError('invalid path: must not be empty: ""')
    if path.startswith("/"):
        raise PayloadError(f"invalid path: must be relative path: {path}")
    if len(path) > MAX_PATH_LENGTH:
        raise PayloadError(
            f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        )
    items = path.split("/")
    for item in items:
        if item == "..":
            raise PayloadError(f"invalid path: must not contain '..': {path}")
        if len(item) > MAX_FILE_NAME_LENGTH:
            raise PayloadError(
                "invalid path: filenames must be less than or equal to "
                f"{MAX_FILE_NAME_LENGTH} characters"
            )
    if items[0].startswith("..") and len(items[0]) > 2:
        raise PayloadError(f"invalid path: must not start with '..': {path}")
    return posixpath.normpath(path)


def _clean(payload: Mapping[str, FileProjection]) -> dict[str, FileProjection]:
    return {validate_path(path): projection for path, projection in payload.items()}


def _old_paths(old_dir: Path) -> set[str]:
    paths: set[str] = set()
    for root, dirs, files in os.walk(old_dir):
        for name in dirs + files:
            paths.add(os.path.relpath(os.path.join(root, name), old_dir))
    return paths


def _with_parents(payload: Mapping[str, FileProjection]) -> set[str]:
    paths: set[str] = set()
    for path in payload:
        while path:
            paths.add(path)
            path = posixpath.dirname(path)
    return paths


def _unchanged(payload: Mapping[str, FileProjection], old_dir: Path) -> bool:
    for path, projection in payload.items():
        try:
            with open(old_dir / path, "rb") as file:
                mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
                if mode != projection.mode or file.read() != projection.data:
                    return False
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
    return True


def _new_timestamp_dir(target: Path) -> Path:
    prefix = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    new_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=target))
    new_dir.chmod(0o755)  # others must traverse it whatever the umask or the user
    return new_dir


def _write_payload(payload: Mapping[str, FileProjection], directory: Path) -> None:
    for path, projection in payload.items():
        full = directory / path
        full.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, projection.mode)
        with os.fdopen(fd, "wb") as file:
            file.write(projection.data)
        os.chmod(full, projection.mode)  # open(2) applied the umask


def _create_user_visible(target: Path, payload: Mapping[str, FileProjection]) -> None:
    for top in sorted({path.split("/", 1)[0] for path in payload}):
        visible = target / top
        wanted = f"{DATA_DIR_NAME}/{top}"
        if visible.is_symlink():
            if os.readlink(visible) == wanted:
                continue
            visible.unlink()
        elif visible.is_dir():  # written by an older agent without the atomic writer
            shutil.rmtree(visible)
        tmp = target / f"{NEW_DATA_DIR_NAME}.{top}"
        tmp.unlink(missing_ok=True)
        os.symlink(wanted, tmp)
        os.replace(tmp, visible)  # also replaces a plain file an older agent wrote


def _remove_user_visible(target: Path, paths: set[str]) -> None:
    for path in paths:
        if "/" in path:  # only the top-level links live in the volume's root
            continue
        visible = target / path
        if visible.is_symlink() or visible.is_file():
            visible.unlink(missing_ok=True)


def write(target: str | os.PathLike[str], payload: Mapping[str, FileProjection]) -> bool:
    """Make ``target`` hold exactly ``payload``; True when anything was written."""
    clean = _clean(payload)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / DATA_DIR_NAME
    try:
        old_name = os.readlink(data_link)
    except FileNotFoundError:
        old_name = ""
    old_dir = target / old_name if old_name else None
    to_remove: set[str] = set()
    if old_dir is not None:
        to_remove = _old_paths(old_dir) - _with_parents(clean)
        if not to_remove and _unchanged(clean, old_dir):
            return False
    new_dir = _new_timestamp_dir(target)
    try:
        _write_payload(clean, new_dir)
        new_link = target / NEW_DATA_DIR_NAME
        new_link.unlink(missing_ok=True)
        os.symlink(new_dir.name, new_link)
        os.replace(new_link, data_link)
    except BaseException:
        shutil.rmtree(new_dir, ignore_errors=True)
        raise
    _create_user_visible(target, clean)
    _remove_user_visible(target, to_remove)
    if old_dir is not None:
        shutil.rmtree(old_dir, ignore_errors=True)
    return True


def read(target: str | os.PathLike[str]) -> dict[str, bytes]:
    """What a reader of the volume sees now: user-visible path -> content (for tests and
    debugging)."""
    target = Path(target)
    found: dict[str, bytes] = {}
    for entry in sorted(target.iterdir()):
        if entry.name.startswith(".."):
            continue
        if entry.is_dir():
            for root, _dirs, files in os.walk(entry, followlinks=True):
                for name in files:
                    full = Path(root) / name
                    found[str(full.relative_to(target))] = full.read_bytes()
        else:
            found[entry.name] = entry.read_bytes()
    return found
