"""Private staging folders next to an output, and removal of the ones killed runs left behind.

A writer builds its output inside `.<name>.tmp-<pid>@<host>-<random>/` in the output's directory
and renames the finished file or folder into place (a folder it moves aside while swapping is
`.<name>.old-<pid>@<host>`). Everything a killed writer leaves (its own
partial files and the temp files libraries such as safetensors create beside the file they
write) is inside that folder, so the next writer of the same output removes it whole. A folder
is removed only when its process is gone: concurrent writers of one output on one host never
remove each other's work. Folders from another host are left alone (their pid means nothing
here).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def writer_gone(pid: int, host: str | None) -> bool:
    """True when the writer `pid` on `host` (None: this host, an older name) no longer runs."""
    return (host is None or host == _HOST) and not _alive(pid)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def stale_entries(target: Path, legacy: tuple[str, ...] = ()) -> list[Path]:
    """Staging folders of `target` whose writer on this host is gone, plus entries matching the
    `legacy` regular expressions (temp names of older versions that carried no pid)."""
    target = Path(target)
    own = re.compile(re.escape(f".{target.name}.") + r"(?:tmp|old)-(\d+)@([A-Za-z0-9_.]+)(?:-[^/]*)?$")
    old = [re.compile(re.escape(f".{target.name}") + pat + "$") for pat in legacy]
    out = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    for name in names:
        m = own.match(name)
        if m:
            if m.group(2) == _HOST and not _alive(int(m.group(1))):
                out.append(target.parent / name)
        elif any(p.match(name) for p in old):
            out.append(target.parent / name)
    return sorted(out)


def remove_stale(target: Path, legacy: tuple[str, ...] = ()) -> list[Path]:
    """Remove what killed writers of `target` left; returns the paths removed."""
    removed = []
    for p in stale_entries(target, legacy):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except FileNotFoundError:  # another writer cleaned it first
            pass
    return removed


def staging_dir(target: Path, legacy: tuple[str, ...] = ()) -> Path:
    """A fresh private folder beside `target` (stale ones removed first)."""
    target = Path(target)
    remove_stale(target, legacy)
    d = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}@{_HOST}-",
                              dir=target.parent))
    os.chmod(d, 0o755)
    return d


def fsync_path(path: Path) -> None:
    """fsync a file or folder (folders: so that renames inside are durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
