"""Swap a running Inspector to a new model version, and back, without stopping it (DESIGN "Model versions").

    insp.swap("v2/model.onnx", key=b"...")      # verified, loaded and warmed beside the running version
    insp.rollback()                             # back to the version that ran before

A swap loads the new version completely *while the old one keeps inspecting*: manifest, sha256 of the artifact
against it, the signature when a key is configured (`sign_version` / `check_signature`), the backend, a
warm-up. Only then does it take the `SwapGate` for writing: the gate waits for the batch in flight to finish,
holds new batches for the few attribute assignments of the switch, and lets them go on the new version. A
batch is inspected inside the gate's read side from preparing its frames to building its Results, so no Result
mixes versions (each names the version that judged it: `Result.model_sha256`) and no frame waits for more than
one batch. A version that fails any check is refused (`SwapRefused`, a `swap_refused` event) and the running
one goes on untouched. The version that ran before stays loaded for an instant `rollback()`; the one before
that is closed.

Requests come from the code (`Inspector.swap`), from `python -m runtime --swap-file PATH` (`SwapWatcher`: the
file holds the path of the version to serve, or the word ``rollback``; it is read when it changes and on
SIGHUP) and, when enabled, from the live view's `POST /model/swap` and `POST /model/rollback`
(`runtime.serve_feedback`).

Signatures: HMAC-SHA256, with a key shared by whoever makes versions (`python -m train.update --sign-key
FILE`) and the line (`--swap-key FILE`), over the manifest's bytes (which hold the artifact's sha256), written
to NAME.sig beside NAME.json. With a key configured an unsigned or wrongly signed version is refused.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Union

from runtime.errors import RuntimeInspectError
from runtime.files import atomic_write
from runtime.manifest import load_manifest, manifest_path_for, verify_artifact

if TYPE_CHECKING:  # pragma: no cover
    from runtime.inspector import Inspector

log = logging.getLogger("runtime.swap")

#: The Inspector attributes that make up one loaded version; a swap replaces all of them at once.
MODEL_STATE = ("manifest", "artifact_path", "manifest_path", "choice", "backend", "device", "backend_reason",
               "_backend", "threshold", "_rule", "_frames", "_band")
SIGNATURE_ALGORITHM = "hmac-sha256"
ROLLBACK = "rollback"
POLL_S = 0.5

PathLike = Union[str, "os.PathLike[str]"]


class SwapRefused(RuntimeInspectError):
    """A new version failed a check (manifest, sha256, signature, loading): the running version goes on."""


# ------------------------------------------------------------------------------------------------ signatures
def signature_path_for(model: PathLike) -> str:
    return os.path.splitext(manifest_path_for(model))[0] + ".sig"


def _digest(manifest_file: str, key: bytes) -> str:
    with open(manifest_file, "rb") as f:
        return hmac.new(key, f.read(), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A name for a key that does not reveal it (the first 16 hex digits of its sha256)."""
    return hashlib.sha256(key).hexdigest()[:16]


def read_key(path: PathLike) -> bytes:
    """The signing key in file `path` (its bytes, surrounding whitespace dropped)."""
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
    except OSError as e:
        raise RuntimeInspectError(f"cannot read the signing key {os.fspath(path)}: {e.strerror or e}") from None
    if len(key) < 16:
        raise RuntimeInspectError(f"the signing key {os.fspath(path)} has {len(key)} bytes: use at least 16 random "
                                  f"bytes (e.g. `head -c 32 /dev/urandom | base64 > KEY`)")
    return key


def sign_version(model: PathLike, key: bytes) -> str:
    """Write NAME.sig for the manifest beside `model` (write the manifest first); returns its path."""
    mpath = manifest_path_for(model)
    path = signature_path_for(model)
    atomic_write(path, json.dumps({"algorithm": SIGNATURE_ALGORITHM, "key_id": key_id(key),
                                   "manifest": os.path.basename(mpath), "signature": _digest(mpath, key)}) + "\n")
    return path


def check_signature(model: PathLike, key: bytes) -> None:
    """Raise SwapRefused unless NAME.sig is a valid signature of NAME.json with `key`."""
    path = signature_path_for(model)
    if not os.path.isfile(path):
        raise SwapRefused(f"{model} is not signed (no {os.path.basename(path)}): sign it with the line's key "
                          f"(`python -m train.update ... --sign-key FILE`)")
    try:
        with open(path, "r", encoding="utf-8") as f:
            sig = json.load(f)
        given = str(sig["signature"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SwapRefused(f"signature {path} is unreadable ({type(e).__name__}): sign the version again") from None
    if sig.get("algorithm") != SIGNATURE_ALGORITHM:
        raise SwapRefused(f"signature {path} uses {sig.get('algorithm')!r}, not {SIGNATURE_ALGORITHM!r}")
    if not hmac.compare_digest(given, _digest(manifest_path_for(model), key)):
        raise SwapRefused(f"signature {path} does not match its manifest with this line's key (key "
                          f"{key_id(key)}, signed with {sig.get('key_id')}): the version was changed after "
                          f"signing or signed with another key")


def verify_version(model: PathLike, key: Optional[bytes] = None) -> None:
    """The checks before anything is loaded: the manifest reads and validates, the artifact's sha256 matches it,
    and with `key` the signature is valid. Raises SwapRefused naming the failed check."""
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise SwapRefused(f"new version {path} does not exist")
    try:
        manifest = load_manifest(path)
        apath = path if not path.lower().endswith(".json") else os.path.join(os.path.dirname(path), manifest.artifact)
        verify_artifact(apath, manifest)
    except RuntimeInspectError as e:
        raise SwapRefused(f"new version {path} refused: {e}") from None
    if key is not None:
        check_signature(path, key)


# ------------------------------------------------------------------------------------------------ the gate
class SwapGate:
    """Readers (batches) run concurrently; a writer (the switch) waits for the readers in flight, and readers
    that arrive while a writer waits queue behind it, so a switch never waits for more than one batch."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._writing and self._readers == 0)
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


# ------------------------------------------------------------------------------------------------ swap, rollback
def _state(insp: "Inspector") -> Dict[str, Any]:
    return {k: getattr(insp, k) for k in MODEL_STATE}


def _switch(insp: "Inspector", state: Dict[str, Any]) -> Dict[str, Any]:
    """Put `state` in place under the gate; returns the state it replaced."""
    with insp._gate.writing():
        old = _state(insp)
        for k, v in state.items():
            setattr(insp, k, v)
    return old


def _event(kind: str, message: str, **numbers: Any) -> Dict[str, Any]:
    return dict(numbers, event=kind, message=message, time=time.time())


def swap_model(insp: "Inspector", model: PathLike, key: Optional[bytes] = None) -> Dict[str, Any]:
    """Load, check and switch to `model`; returns the `model_swapped` event (also sent to the Inspector's
    streams). Raises SwapRefused (after a `swap_refused` event) when a check fails: nothing changed."""
    from runtime.inspector import Inspector  # noqa: PLC0415 - the Inspector imports this module

    t0 = time.perf_counter()
    path = os.fspath(model)
    with insp._swap_lock:  # one swap at a time; inspection goes on meanwhile
        if insp.closed:
            raise RuntimeInspectError("this Inspector is closed: nothing to swap")
        try:
            verify_version(path, key)
            loaded = Inspector(path, verify=True, **insp._load_args)
        except RuntimeInspectError as e:
            refused = e if isinstance(e, SwapRefused) else SwapRefused(f"new version {path} refused: {e}")
            insp._emit(_event("swap_refused", str(refused), model=path, serving=insp.manifest.sha256))
            raise refused from None
        new_state = _state(loaded)
        loaded._closed = True  # its backend now belongs to `insp`; the shell must never close it
        if insp.closed:  # closed while the new version loaded: nothing to serve it to
            new_state["_backend"].close()
            raise RuntimeInspectError("this Inspector was closed during the swap")
        old = _switch(insp, new_state)
        retired, insp._previous = insp._previous, old
        if retired is not None:
            retired["_backend"].close()
    version = insp.manifest.version.number if insp.manifest.version is not None else None
    event = _event("model_swapped", f"now serving {os.path.basename(insp.artifact_path)} (sha256 "
                                    f"{insp.manifest.sha256[:12]}, version {version or 1}) instead of "
                                    f"{old['manifest'].sha256[:12]}", model=insp.artifact_path,
                   sha256=insp.manifest.sha256, previous_sha256=old["manifest"].sha256, version=version,
                   threshold=insp.threshold, seconds=round(time.perf_counter() - t0, 3))
    insp._emit(event)
    return event


def rollback_model(insp: "Inspector") -> Dict[str, Any]:
    """Switch back to the version that ran before the last swap (still loaded); returns the event."""
    with insp._swap_lock:
        if insp._previous is None:
            raise SwapRefused("no previous version to roll back to (none was swapped out in this process)")
        old = _switch(insp, insp._previous)
        insp._previous = old
    event = _event("model_rolled_back", f"rolled back to {os.path.basename(insp.artifact_path)} (sha256 "
                                        f"{insp.manifest.sha256[:12]}) from {old['manifest'].sha256[:12]}",
                   model=insp.artifact_path, sha256=insp.manifest.sha256, previous_sha256=old["manifest"].sha256,
                   threshold=insp.threshold)
    insp._emit(event)
    return event


def request(insp: "Inspector", what: str, key: Optional[bytes] = None, base: str = ".") -> Dict[str, Any]:
    """One request as the swap file or an endpoint gives it: ``rollback`` or the path of a version (relative
    paths from `base`)."""
    what = what.strip()
    if what == ROLLBACK:
        return rollback_model(insp)
    return swap_model(insp, what if os.path.isabs(what) else os.path.join(base, what), key)


# ------------------------------------------------------------------------------------------------ watched file
class SwapWatcher:
    """Watches `path` (a text file: a version's path or ``rollback``) from a daemon thread and acts on each new
    content; SIGHUP makes it look at once (installed when started from the main thread). A refused request
    is logged and reported as an event; the watcher goes on."""

    def __init__(self, inspector: "Inspector", path: PathLike, key: Optional[bytes] = None, poll_s: float = POLL_S):
        self.inspector = inspector
        self.path = os.fspath(path)
        self.key = key
        self.poll_s = float(poll_s)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._seen = self._read()  # what the file says at start is the running state, not a request
        self._thread = threading.Thread(target=self._loop, name="swap-watcher", daemon=True)
        self._old_handler: Any = None

    def _read(self) -> Optional[str]:
        try:
            with open(self.path, "r", encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError:
            return None

    def start(self) -> "SwapWatcher":
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGHUP, lambda *_: self._wake.set())
        self._thread.start()
        return self

    def check(self) -> Optional[Dict[str, Any]]:
        """Act on the file once if its content changed; returns the event (None: nothing new or refused)."""
        text = self._read()
        if text is None or text == self._seen:
            return None
        self._seen = text
        try:
            return request(self.inspector, text, self.key, os.path.dirname(os.path.abspath(self.path)))
        except RuntimeInspectError as e:
            log.warning("swap request in %s refused: %s", self.path, e)
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set() or self.inspector.closed:
                return
            self.check()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        if self._old_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self._old_handler)
            self._old_handler = None


__all__ = ["SwapGate", "SwapRefused", "SwapWatcher", "swap_model", "rollback_model", "request", "sign_version",
           "check_signature", "verify_version", "read_key", "key_id", "signature_path_for", "MODEL_STATE", "ROLLBACK"]
