"""Writing output files: atomically (a reader never sees half a file, a crash leaves the old one), and JSON
reports with one error on an unwritable path. The one implementation for manifests, run files, engines and
every command's --json. Stdlib only."""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import uuid
from typing import Any, Iterator, Optional, Union

from runtime import strict_json
from runtime.errors import writing

PathLike = Union[str, "os.PathLike[str]"]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc/self/status), else by setting
    and restoring it under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode `open()` gives a new file here (0o666 less the umask): what a temporary file gets before it is
    renamed into place, so a service account reads a model the way it reads any other file."""
    return 0o666 & ~current_umask()


def atomic_write(path: PathLike, data: Union[str, bytes]) -> None:
    """Write `data` (text as UTF-8) to a temporary file beside `path`, flush it to disk, then rename it over
    `path`; the folder is created when missing. The file gets the mode of any new file (0o666 less the
umask), not mkstemp's 0600. On failure the temporary file is removed and the error raised."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # mkstemp makes it 0600 whatever the umask
                os.fchmod(f.fileno(), new_file_mode())
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: PathLike, data: Any, what: Optional[str] = None) -> None:
    """`data` as indented JSON at `path`, atomically; an OSError becomes an OutputError naming `what`
    (default: the path), e.g. `write_json(args.json, report, f"--json {args.json}")`."""
    with writing(what or os.fspath(path)):
        atomic_write(path, strict_json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """For a writer that takes a file name (``onnx.save``, safetensors' ``save_file``, ``shutil.copyfile``): a
    temporary name beside `path` (its folder created) that is renamed over `path` when the block ends, and
    removed when it raises. The file gets the mode of any new file (0o666 less the umask), whatever mode its writer
    gave it."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if os.path.exists(tmp):  # some writers (safetensors) create their file 0600 whatever the umask
            os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["atomic_path", "atomic_write", "write_json", "current_umask", "new_file_mode"]
