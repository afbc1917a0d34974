"""Output files: checked before any work starts, written atomically, OS errors as one line.

Every writer (reports, figures, sweep CSVs, traces, training state) goes through
`atomic_write`: the bytes go to a temp file in the target's directory, are flushed to disk,
and the temp file is renamed over the target. A crash, a kill or an error mid-write never
leaves a half-written file at the target path: it holds the previous file or nothing.

`check_output_file` / `check_output_dir` run the cheap checks (format from the suffix, the
parent is an existing writable directory, the target is not a directory or a device) before a
command simulates or trains, so a bad `--out` costs no minutes of work. Any OSError while
writing becomes an AccelsimError naming the target path (exit 2, one line).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from accelsim.errors import AccelsimError


def os_reason(exc: OSError) -> str:
    """The short reason of an OSError ("No space left on device"), never a traceback."""
    if exc.strerror:
        return exc.strerror
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def os_error_reason(exc: BaseException) -> str | None:
    """The OS error inside `exc`, or None. Besides OSError this sees the errors of writers
    implemented in Rust (safetensors), which carry the OS error only as text ending in
    "(os error N)"."""
    if isinstance(exc, OSError):
        return os_reason(exc)
    found = _RUST_OS_ERROR.search(str(exc))
    return os.strerror(int(found.group(1))) if found else None


def _where(path: Path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def _probe_directory(directory: Path, where: str) -> None:
    """Create and remove an empty temp file: the one check that sees read-only file systems,
    /proc and /sys, and permissions (os.access lies for root and for read-only mounts)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".accelsim-probe-", dir=directory)
    except OSError as exc:
        raise AccelsimError(f"{where}: cannot write in {directory} ({os_reason(exc)})") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _nearest_existing(path: Path, where: str) -> tuple[Path, os.stat_result]:
    """The path itself or its nearest existing ancestor, with its stat."""
    probe = path
    while True:
        try:
            return probe, os.stat(probe)
        except (FileNotFoundError, NotADirectoryError):
            if probe.parent == probe:
                raise AccelsimError(f"{where}: no existing parent directory") from None
            probe = probe.parent
        except OSError as exc:  # EACCES on a search permission, ELOOP
            raise AccelsimError(f"{where}: cannot write ({os_reason(exc)})") from None


def check_output_file(path: str | Path, suffixes: Iterable[str] | None = None, *,
                      option: str | None = "--out", kind: str = "output") -> Path:
    """Refuse, before any work, an output file path that cannot be written.

    suffixes: the accepted (lower-case) extensions, the format being chosen from the suffix;
    None accepts any name. The path must not be a directory or a special file (a device, a
    pipe: renaming over it would replace the node), its parent must be an existing directory
    where a file can be created."""
    raw = os.fspath(path)
    path = Path(path)
    where = _where(path, option)
    if raw.endswith(os.sep) or path.name in ("", ".", ".."):
        raise AccelsimError(f"{where}: names a directory, not a {kind} file")
    if suffixes is not None:
        suffixes = tuple(suffixes)
        if not any(str(path).lower().endswith(s) for s in suffixes):
            raise AccelsimError(f"{where}: unknown {kind} format '{path.suffix}' "
                                f"(use {', '.join(suffixes)})")
    found, st = _nearest_existing(path, where)
    if found == path:
        if stat.S_ISDIR(st.st_mode):
            raise AccelsimError(f"{where}: is a directory, not a {kind} file")
        if not stat.S_ISREG(st.st_mode):
            raise AccelsimError(f"{where}: exists and is not a regular file")
        found, st = path.parent, os.stat(path.parent)
    if not stat.S_ISDIR(st.st_mode):
        raise AccelsimError(f"{where}: {found} is not a directory")
    if found != path.parent:
        raise AccelsimError(f"{where}: directory {path.parent} does not exist")
    _probe_directory(found, where)
    return path


def check_output_dir(path: str | Path, *, option: str | None = "--out") -> Path:
    """Refuse, before any work, an output directory that cannot be created or written.

    The directory may exist (it must then be a directory) or not (its nearest existing
    ancestor must be a directory where one can be created)."""
    path = Path(path)
    where = _where(path, option)
    found, st = _nearest_existing(path, where)
    if not stat.S_ISDIR(st.st_mode):
        what = "exists and is not a directory" if found == path else f"{found} is not a directory"
        raise AccelsimError(f"{where}: {what}")
    _probe_directory(found, where)
    return path


def make_output_dir(path: str | Path, *, option: str | None = "--out") -> Path:
    """mkdir -p, with an OSError as one line naming the directory."""
    path = check_output_dir(path, option=option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AccelsimError(f"{_where(path, option)}: cannot create ({os_reason(exc)})") from None
    return path


def _file_mode() -> int:
    """0666 less the umask: the mode an ordinary `open(path, "w")` would give (mkstemp and
    some writers make 0600; reports, figures and traces are for sharing)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


STALE_AFTER_S = 60.0  # a temp file this old whose writer process is gone is debris


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temp files ".NAME.PID.XXXX.tmp" that killed writers of `path` left behind:
    those whose writer process no longer exists and that are older than STALE_AFTER_S (a live
    concurrent writer's temp file is never touched). Returns what was removed."""
    import time

    path = Path(path)
    head = f".{path.name}."
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        name = entry.name
        if not (name.startswith(head) and name.endswith(".tmp")):
            continue
        pid = name[len(head):].split(".", 1)[0]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < STALE_AFTER_S:
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def atomic_write(path: str | Path, write: Callable[[str], None], *, fsync: bool = True) -> Path:
    """Call write(tmp_path), flush it to disk, then rename it to `path`.

    The temp file sits beside the target (same file system, so the rename is atomic) under a
    hidden name ".NAME.PID.XXXX.tmp" (writers that pick a format from the name must be told
    it); temp files of earlier writers that were killed are removed first. An OSError anywhere
    (full disk, read-only file system, parent not a directory) becomes one AccelsimError line
    naming `path`; the temp file is removed on every failure."""
    path = Path(path)
    remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=path.parent)
    except OSError as exc:
        raise AccelsimError(f"{path}: cannot write ({os_reason(exc)})") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        reason = os_error_reason(exc)
        if reason is not None:
            raise AccelsimError(f"{path}: cannot write ({reason})") from None
        raise
    return path
