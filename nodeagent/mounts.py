"""tmpfs mounts for the volumes that hold secrets, and taking them down again.

Secret, projected and downwardAPI volumes live on a tmpfs mounted on their directory under
``DATA_DIR/pods/<uid>/volumes/``, as kubelet's memory-backed emptyDir does: a Secret or a
ServiceAccount token never reaches the node's disk. The mount is made before any container
binds the directory, so the container sees the tmpfs and, later, every atomic update.

Invariants:
- ``unmount_all_under(root)`` only touches mount points strictly inside ``root`` (read
  from ``/proc/self/mountinfo``), deepest first, and raises ``MountError`` if any is still
  mounted afterwards: a pod directory is never ``rmtree``-d through a live mount.
- Every call here is a plain syscall through libc (``mount(2)``, ``umount2(2)``); nothing
  forks. A mount that is busy is detached lazily (``MNT_DETACH``) so the path is free at
  once and the kernel frees the tmpfs when its last user goes.

``HostMounter`` is the real thing (root needed); unit tests give the pod worker a fake
with the same three methods.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
from pathlib import Path
from typing import Protocol

MOUNTINFO = "/proc/self/mountinfo"
MNT_DETACH = 2
MS_NOSUID = 2
MS_NODEV = 4
_OCTAL = re.compile(r"\\([0-7]{3})")


class MountError(OSError):
    """A tmpfs could not be mounted or unmounted; the message names the path."""


class Mounter(Protocol):
    def ensure_tmpfs(self, path: str) -> None:
        """Make ``path`` a directory with a tmpfs mounted on it (a no-op if it is one)."""

    def unmount_all_under(self, root: str) -> list[str]:
        """Unmount every mount point inside ``root``; return the ones unmounted."""

    def mount_points_under(self, root: str) -> list[str]:
        """The mount points strictly inside ``root``."""


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return _OCTAL.sub(lambda match: chr(int(match[1], 8)), field)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of each line of a ``/proc/<pid>/mountinfo``."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        mounts.append((_unescape(fields[4]), fields[separator + 1]))
    return mounts


def mounts(path: str = MOUNTINFO) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        return parse_mountinfo(file.read())


def _inside(path: str, root: str) -> bool:
    return path.startswith(root.rstrip("/") + "/")


class HostMounter:
    """Real mounts in the agent's mount namespace (needs CAP_SYS_ADMIN)."""

    def __init__(self) -> None:
        self._libc: ctypes.CDLL | None = None

    def _lib(self) -> ctypes.CDLL:
        if self._libc is None:
            self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return self._libc

    def ensure_tmpfs(self, path: str) -> None:
        os.makedirs(path, mode=0o755, exist_ok=True)
        if os.path.ismount(path):
            return
        result = self._lib().mount(
            b"tmpfs", os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV, None
        )
        if result != 0:
            code = ctypes.get_errno()
            raise MountError(code, f"cannot mount a tmpfs on {path}: {os.strerror(code)}")

    def _umount(self, path: str) -> None:
        if self._lib().umount2(os.fsencode(path), 0) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EBUSY and self._lib().umount2(os.fsencode(path), MNT_DETACH) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EINVAL and not os.path.ismount(path):
            return  # someone else took it down meanwhile
        raise MountError(code, f"cannot unmount {path}: {os.strerror(code)}")

    def mount_points_under(self, root: str) -> list[str]:
        real = os.path.realpath(root)
        return [point for point, _fstype in mounts() if _inside(point, real)]

    def unmount_all_under(self, root: str) -> list[str]:
        points = sorted(set(self.mount_points_under(root)), key=len, reverse=True)
        for point in points:
            self._umount(point)
        left = self.mount_points_under(root)
        if left:
            raise MountError(errno.EBUSY, f"still mounted under {root}: {', '.join(left)}")
        return points


def is_tmpfs(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a tmpfs mount point (read from mountinfo)."""
    real = os.path.realpath(Path(path))
    found = [fstype for point, fstype in mounts() if point == real]
    return bool(found) and found[-1] == "tmpfs"
