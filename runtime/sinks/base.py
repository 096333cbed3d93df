"""The sink base: a bounded queue and a worker thread between the inspection loop and a receiver.

`Sink.put(message)` never blocks and never raises: the message joins a bounded queue (when the queue is full the
oldest waiting message is dropped and counted in `dropped`), and the sink's own thread delivers it. A subclass
fills in `_deliver(item)`:

- return True: delivered now (webhook answered 2xx, callback returned, OPC UA value written);
- return False: handed to a protocol that confirms later (MQTT QoS 1: the broker's PUBACK); the subclass calls
  `_confirmed(item)` then, or `_lost(item, why)` when it gives up;
- raise `Retry`: the receiver is away (connection refused, HTTP 5xx); the same message is tried again with
  back-off (0.1 s doubling to `retry_max_s`) until it goes through, so it arrives late rather than never; meanwhile
  new messages wait in the queue (and the oldest are dropped, counted, once it is full);
- raise anything else: this message cannot be delivered (counted in `failed`, logged), the next one is tried.

Every message offered is accounted for: ``offered == delivered + failed + dropped + pending`` at any time, and
after `close()` (which drains the queue for up to `drain_s` seconds) `pending` is 0: what was still undelivered
is counted in `failed`. `late` counts messages delivered after at least one failed try or a lost connection.
Latency (`latency_ms`) runs from the frame's read (`message["time_read"]`, seconds since the epoch) to delivery.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Deque, Dict, Optional

from runtime.errors import RuntimeInspectError

log = logging.getLogger("runtime.sinks")

LATENCIES_KEPT = 100_000
RETRY_FIRST_S = 0.1


class SinkError(RuntimeInspectError):
    """A sink is misconfigured (bad URL, missing library, port in use): one line with what to change."""


class Retry(RuntimeInspectError):
    """Raised by `_deliver` when the receiver is away: the message is tried again after a back-off."""


class Item:
    """A message on its way: the JSON-able payload and when its frame was read (for the latency)."""

    __slots__ = ("message", "time_read", "tries", "late")

    def __init__(self, message: Dict[str, Any]):
        self.message = message
        self.time_read = float(message.get("time_read", time.time()))
        self.tries = 0
        self.late = False


def percentile_ms(values: "Deque[float]", q: float) -> Optional[float]:
    if not values:
        return None
    import numpy as np  # noqa: PLC0415

    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)) * 1000.0, 3)


class Sink:
    """Base class of every sink (see the module doc). `name` names it in summaries (default: its kind)."""

    kind = "sink"

    def __init__(self, name: Optional[str] = None, queue_size: int = 1000, retry_max_s: float = 2.0,
                 drain_s: float = 5.0):
        if not isinstance(queue_size, int) or queue_size < 1:
            raise SinkError(f"a sink's queue_size must be a positive integer, got {queue_size!r}")
        self.name = name or self.kind
        self.queue_size = queue_size
        self.retry_max_s = float(retry_max_s)
        self.drain_s = float(drain_s)
        self.offered = self.delivered = self.dropped = self.failed = self.retries = self.late = 0
        self.inflight = 0  # handed to the protocol, confirmation awaited (MQTT QoS 1)
        self.last_error = ""
        self._queue: Deque[Item] = collections.deque()
        self._cond = threading.Condition()
        self._latency: Deque[float] = collections.deque(maxlen=LATENCIES_KEPT)
        self._closing = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._away_since: Optional[float] = None  # receiver unreachable since (for one log line per outage)

    # -- the inspection side --------------------------------------------------------------------------
    def start(self) -> "Sink":
        """Connect (subclass `_open`, may raise SinkError) and start the worker thread; returns self."""
        if self._thread is None:
            self._open()
            self._thread = threading.Thread(target=self._work, name=f"sink-{self.name}", daemon=True)
            self._thread.start()
        return self

    def declare(self, cameras: Any, model: Dict[str, Any]) -> None:
        """The cameras and model (name -> version) a line will report, before its first message (OPC UA makes
        its nodes then); called from the inspection side, must not block."""

    def put(self, message: Dict[str, Any]) -> None:
        """Queue one message (a JSON-able dict with `time_read`); never blocks, never raises."""
        item = Item(message)
        with self._cond:
            self.offered += 1
            if self._closing.is_set():
                self.failed += 1
                return
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(item)
            self._cond.notify()

    # -- the worker side ------------------------------------------------------------------------------
    def _next(self, deadline: Optional[float]) -> Optional[Item]:
        with self._cond:
            while not self._queue:
                if self._closing.is_set():
                    return None
                self._cond.wait(0.1)
            if deadline is not None and time.monotonic() > deadline:
                return None
            return self._queue.popleft()

    def _work(self) -> None:
        deadline: Optional[float] = None
        while True:
            if deadline is None and self._closing.is_set():
                deadline = time.monotonic() + self.drain_s
            item = self._next(deadline)
            if item is None:
                break
            delay = RETRY_FIRST_S
            while True:
                item.tries += 1
                try:
                    if self._deliver(item):
                        self._confirmed(item)
                    self._back()
                    break
                except Retry as e:
                    self._away(e)
                    item.late = True
                    with self._cond:
                        self.retries += 1
                    if deadline is None and self._closing.is_set():
                        deadline = time.monotonic() + self.drain_s
                    if deadline is not None and time.monotonic() + delay > deadline:
                        self._lost(item, f"undelivered at close: {e}")
                        break
                    if deadline is None:
                        self._closing.wait(delay)  # close() cuts the back-off short, then the drain decides
                    else:
                        time.sleep(delay)
                    delay = min(delay * 2.0, self.retry_max_s)
                except Exception as e:  # noqa: BLE001 - a receiver's refusal must not end the worker
                    self._lost(item, f"{type(e).__name__}: {e}")
                    break
        with self._cond:  # what the drain could not deliver
            left = len(self._queue)
            self._queue.clear()
            self.failed += left
        if left:
            log.warning("sink %s: %d message(s) undelivered at close", self.name, left)

    def _confirmed(self, item: Item) -> None:
        """Count `item` delivered now (subclasses confirming later call this from their protocol thread)."""
        now = time.time()
        with self._cond:
            self.delivered += 1
            self.late += int(item.late)
            self._latency.append(max(0.0, now - item.time_read))

    def _lost(self, item: Item, why: str) -> None:
        with self._cond:
            self.failed += 1
            self.last_error = why
        log.warning("sink %s: message for frame %s of %s not delivered: %s", self.name,
                    item.message.get("frame"), item.message.get("camera"), why)

    def _away(self, e: BaseException) -> None:
        self.last_error = str(e)
        if self._away_since is None:
            self._away_since = time.monotonic()
            log.warning("sink %s: receiver unreachable (%s); retrying, messages wait in the queue", self.name, e)

    def _back(self) -> None:
        if self._away_since is not None:
            log.warning("sink %s: receiver back after %.1f s", self.name, time.monotonic() - self._away_since)
            self._away_since = None

    # -- subclass hooks ---------------------------------------------------------------------------------
    def _open(self) -> None:
        """Prepare the connection (may raise SinkError on bad configuration; an absent receiver is not an error:
        messages wait and are delivered when it comes)."""

    def _deliver(self, item: Item) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _close(self) -> None:
        """Release the connection (after the queue was drained)."""

    # -- end ----------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Deliver what is queued (up to `drain_s` seconds), then disconnect; final and idempotent."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.drain_s + self.retry_max_s + 2.0)
        self._close()

    def __enter__(self) -> "Sink":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def pending(self) -> int:
        return len(self._queue) + self.inflight

    def stats(self) -> Dict[str, Any]:
        """Counters and delivery latency (frame read -> delivered) of this sink."""
        with self._cond:
            lat = collections.deque(self._latency)
            out = {"sink": self.name, "kind": self.kind, "offered": self.offered, "delivered": self.delivered,
                   "late": self.late, "dropped": self.dropped, "failed": self.failed, "pending": self.pending,
                   "retries": self.retries}
        out["latency_p50_ms"] = percentile_ms(lat, 50)
        out["latency_p99_ms"] = percentile_ms(lat, 99)
        if self.last_error:
            out["last_error"] = self.last_error[:200]
        return out


__all__ = ["Item", "Retry", "Sink", "SinkError"]
