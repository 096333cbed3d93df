"""The toolkit's errors: one actionable line each (what failed, the value found, what to do).

`InspectError` is the one root: every error the toolkit raises on user input or on the environment derives
from it (`train.errors`, `export.errors`, `calibration.errors` and the runtime's below), so a command-line
entry point catches that one type (`cli_exit`). This module is the bottom of the dependency graph: every
package may import it. Stdlib only.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Optional


class InspectError(Exception):
    """Root of every error the toolkit raises on user input or on the environment."""


class OutputError(InspectError):
    """An output file or folder cannot be written: a path that is not writable, a parent that is a file, a full
    disk. Raised by `writing`, where the output is written."""


class RuntimeInspectError(InspectError):
    """Base class of every error the runtime raises on user input or on the environment."""


class BackendUnavailable(RuntimeInspectError):
    """A backend's library is not installed (or cannot run here). The message names the pip package."""

    def __init__(self, backend: str, package: Optional[str] = None, detail: str = "", hint: str = ""):
        self.backend = backend
        self.package = package
        self.detail = detail
        parts = [f"backend {backend!r} is not available"]
        if detail:
            parts[0] += f" ({detail})"
        if package:
            parts.append(f"install it with `pip install {package}`")
        if hint:
            parts.append(hint)
        super().__init__(": ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if len(parts) > 2 else ""))


class ManifestError(RuntimeInspectError):
    """A manifest (NAME.json beside NAME.onnx / NAME.engine) is missing, unreadable or invalid."""


class ArtifactMismatch(RuntimeInspectError):
    """The artifact does not match its manifest or this machine: sha256 differs, or an engine was built for
    another GPU / TensorRT version. The message says what to rebuild and how."""

    def __init__(self, what: str, rebuild: str = ""):
        self.what = what
        self.rebuild = rebuild
        super().__init__(what + (f"; rebuild it: {rebuild}" if rebuild else ""))


class FrameError(RuntimeInspectError):
    """A frame given to the Inspector is empty, of the wrong dtype or shape, or corrupt."""


class BatchFrameError(FrameError):
    """Some frames of an `inspect_batch` call were refused; the others were inspected. `errors` maps each bad
    frame's position to its FrameError, `results` has a Result (or None for a bad frame) per position."""

    def __init__(self, errors: "dict", results: "list"):
        self.errors = dict(errors)
        self.results = list(results)
        first = min(self.errors)
        super().__init__(f"{len(self.errors)} of {len(self.results)} frames refused (positions "
                         f"{', '.join(map(str, sorted(self.errors)))}; first: {self.errors[first]}); the other "
                         f"frames were inspected: their Results are in this error's .results")


class SourceError(RuntimeInspectError):
    """A frame source cannot be opened or read: camera missing, file unreadable, stream lost."""


def one_line(e: BaseException, limit: int = 300) -> str:
    """The first non-empty line of a (foreign) exception's message, at most `limit` characters, for wrapping
    a library's exception in one of ours."""
    for line in str(e).strip().splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(e).__name__


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """Inside this block an OSError (the user's output path: unwritable, a file where a folder should be, disk
    full) becomes an OutputError naming `what` and the operating system's reason, so `cli_exit` stays the only
    catch of a command line."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or one_line(e)
        where = f" ({e.filename})" if e.filename and str(e.filename) not in str(what) else ""
        raise OutputError(f"cannot write {what}{where}: {reason}; choose a writable path") from e


def cli_exit(run: Callable[[], int]) -> int:
    """Run a command-line entry point's body: the toolkit's own errors become one `error: ...` line on stderr
    and exit status 2 (argparse's for a bad command line); anything else is a bug and keeps its traceback."""
    try:
        return run()
    except InspectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


__all__ = [
    "cli_exit",
    "one_line",
    "writing",
    "InspectError",
    "OutputError",
    "RuntimeInspectError",
    "BackendUnavailable",
    "ManifestError",
    "ArtifactMismatch",
    "FrameError",
    "BatchFrameError",
    "SourceError",
]
