"""Callback sink: a Python function called with each verdict, in the sink's own thread (never the inspection
loop's), e.g. to drive a digital output. An exception from the function counts the message as failed and is
logged; it is not retried (an output pulsed twice is worse than one reported miss). The function may raise
`runtime.sinks.Retry` to ask for a retry with back-off instead."""
from __future__ import annotations

from typing import Any, Callable, Dict

from runtime.sinks.base import Item, Sink, SinkError


class CallbackSink(Sink):
    kind = "callback"

    def __init__(self, function: Callable[[Dict[str, Any]], Any], **options: Any):
        if not callable(function):
            raise SinkError(f"a callback sink needs a callable, got {type(function).__name__}")
        options.setdefault("name", getattr(function, "__name__", "callback"))
        super().__init__(**options)
        self.function = function

    def _deliver(self, item: Item) -> bool:
        self.function(item.message)
        return True


__all__ = ["CallbackSink"]
