"""HTTP webhook sink: each verdict POSTed as JSON (`Content-Type: application/json`) to a URL, standard library
only. A 2xx answer is delivered; a connection error, a timeout, 408, 429 or 5xx is a retry with back-off (the
message arrives late, in order); any other 4xx means the receiver refuses this message: counted failed."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Optional

from runtime.sinks.base import Item, Retry, Sink, SinkError

RETRY_STATUS = (408, 429)


class WebhookSink(Sink):
    kind = "webhook"

    def __init__(self, url: str, timeout_s: float = 2.0, headers: Optional[Dict[str, str]] = None, **options: Any):
        if not url.lower().startswith(("http://", "https://")):
            raise SinkError(f"a webhook URL starts with http:// or https://, got {url!r}")
        super().__init__(**options)
        self.url = url
        self.timeout_s = float(timeout_s)
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        # never through an HTTP proxy of the environment: the receiver is on the plant network
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _deliver(self, item: Item) -> bool:
        body = json.dumps(item.message).encode("utf-8")
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                resp.read()
            return True
        except urllib.error.HTTPError as e:
            if e.code >= 500 or e.code in RETRY_STATUS:
                raise Retry(f"{self.url} answered {e.code}") from None
            raise SinkError(f"{self.url} refused the message with {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise Retry(f"{self.url} unreachable ({getattr(e, 'reason', e)})") from None

    def stats(self) -> Dict[str, Any]:
        return dict(super().stats(), url=self.url)


__all__ = ["WebhookSink"]
