"""Which backend runs an artifact: each backend declares it on its class (`Selectable`, a base of
`runtime.backends.base.Backend`), and `choose` reads the declarations of the registered classes, so a new backend
is one file plus a registry line (`runtime.backends.REGISTRY`) with no edit here.

- An artifact kind that one backend declares (an engine, an OpenVINO IR) runs on that backend; any other asked
  for by name is refused, naming it.
- A kind that several declare (.onnx): asked for by name, the backend's own `choose_by_name` (its devices,
  what it says when its GPU build is missing); "auto": on each device tried ("auto": cuda then cpu), the
  backends that declare an `auto_priority` for that device, lowest first, the first whose `auto_reason` is
  not None. When none can, the last-ranked (the default that always installs) says what to install.
- A `remote` backend (a server that runs what it is given) is used only when asked for by name.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Optional, Tuple

from runtime.errors import BackendUnavailable, RuntimeInspectError

DEVICES = ("auto", "cpu", "cuda")


class BackendChoice(NamedTuple):
    name: str
    device: str
    reason: str


class Selectable:
    """What a backend declares for selection (class attributes) and its selection hooks (classmethods)."""

    name = "base"
    artifact_kinds: Tuple[str, ...] = ()
    needs_gpu = False
    #: Devices it computes on when asked for by name ("auto" picks the first).
    devices: Tuple[str, ...] = ("cpu",)
    #: device -> rank among the backends "auto" may pick on that device for a kind several declare (lower
    #: first); a device not listed: "auto" never picks it there (only asked for by name).
    auto_priority: Mapping[str, int] = {}
    #: artifact kinds it also runs when asked for by name (the torch backend: an .onnx, through its source run)
    by_name_kinds: Tuple[str, ...] = ()
    #: a server that runs whatever artifact it is given: only asked for by name, whatever the kind
    remote = False
    #: how errors name an artifact kind only this backend runs: kind -> (long name, short name)
    kind_names: Mapping[str, Tuple[str, str]] = {}

    @classmethod
    def probe(cls) -> None:  # pragma: no cover - Backend defines it
        raise NotImplementedError

    @classmethod
    def choose_by_name(cls, artifact_kind: str, device: str) -> BackendChoice:
        """Asked for by name for an artifact kind it runs (declared or `by_name_kinds`): the device it runs on,
        or an error saying what to do. Default: any of `devices` ("auto": the first), library probed."""
        if device != "auto" and device not in cls.devices:
            raise RuntimeInspectError(f"the {cls.name} backend runs on {' or '.join(cls.devices)} here: use device "
                                      f"{' or '.join(repr(d) for d in cls.devices + ('auto',))}")
        cls.probe()
        return BackendChoice(cls.name, cls.devices[0] if device == "auto" else device, "asked for by name")

    @classmethod
    def refuse_kind(cls, artifact_kind: str) -> RuntimeInspectError:
        """The error when asked for by name for a kind it does not run."""
        return RuntimeInspectError(f"backend {cls.name!r} cannot run a {artifact_kind!r} artifact")

    @classmethod
    def auto_reason(cls, device: str) -> Optional[str]:
        """Why "auto" picks it on `device` (one of its `auto_priority` devices), or None when it cannot run
        there now (library or GPU build missing). Default: it can when its library imports."""
        try:
            cls.probe()
        except BackendUnavailable:
            return None
        return f"auto: {cls.name} on the {device.upper() if device == 'cpu' else 'GPU'}"

    @classmethod
    def auto_unavailable(cls, device: str) -> Exception:
        """The error when no backend "auto" may pick on `device` can run (raised by the last-ranked one)."""
        return BackendUnavailable(cls.name, getattr(cls, "package", cls.name),
                                  detail=f"no backend for this model can run on device {device!r}")


def choose(classes: Mapping[str, Any], artifact_kind: str, requested: str, device: str) -> BackendChoice:
    """The backend for an artifact among the registered `classes` (name -> class), see the module doc."""
    known = ", ".join(classes)
    if requested != "auto" and requested not in classes:
        raise RuntimeInspectError(f"unknown backend {requested!r}; known: auto, {known}")
    if device not in DEVICES:
        raise RuntimeInspectError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
    if requested != "auto" and classes[requested].remote:
        return classes[requested].choose_by_name(artifact_kind, device)
    runners = [n for n, c in classes.items() if not c.remote and artifact_kind in c.artifact_kinds]
    if len(runners) == 1:
        return _only_runner(classes, runners[0], artifact_kind, requested, device)
    if not runners:
        kinds = sorted({k for c in classes.values() if not c.remote for k in c.artifact_kinds})
        raise RuntimeInspectError(f"unknown artifact kind {artifact_kind!r}; known: {', '.join(kinds)}")
    if requested != "auto":
        cls = classes[requested]
        if artifact_kind not in cls.artifact_kinds + cls.by_name_kinds:
            raise cls.refuse_kind(artifact_kind)
        return cls.choose_by_name(artifact_kind, device)
    return _auto(classes, runners, device)


def _auto(classes: Mapping[str, Any], runners, device: str) -> BackendChoice:
    last: Optional[Callable[[], Exception]] = None
    for dev in (("cuda", "cpu") if device == "auto" else (device,)):
        ranked = sorted((classes[n].auto_priority[dev], n) for n in runners if dev in classes[n].auto_priority)
        for _, name in ranked:
            reason = classes[name].auto_reason(dev)
            if reason is not None:
                return BackendChoice(name, dev, reason)
        if ranked and (device != "auto" or dev == "cpu"):
            cls = classes[ranked[-1][1]]
            last = lambda cls=cls, dev=dev: cls.auto_unavailable(dev)  # noqa: E731
    if last is None:
        raise RuntimeInspectError(f"no backend is declared for 'auto' on device {device!r}: name one")
    raise last()


def _only_runner(classes: Mapping[str, Any], name: str, artifact_kind: str, requested: str,
                 device: str) -> BackendChoice:
    """The one backend that declares the kind (an engine, an IR) runs it; one asked for by name that is not it
    is refused."""
    cls = classes[name]
    what, short = cls.kind_names.get(artifact_kind, (f"a {artifact_kind!r} artifact", artifact_kind))
    if requested not in ("auto", name):
        raise RuntimeInspectError(f"backend {requested!r} cannot run {what}: use backend {name!r} or give the .onnx "
                                  f"model instead")
    if cls.needs_gpu and device == "cpu":
        raise RuntimeInspectError(f"{what} runs on an NVIDIA GPU, not device 'cpu': give the .onnx model to run on "
                                  f"the CPU")
    cls.probe()
    return BackendChoice(name, "cuda" if cls.needs_gpu else "cpu", f"{short} runs only on {name}")
