"""The runtime command line's flags for learning on the line (`python -m runtime`): the drift window, operator
corrections from the live view, and model swaps by watched file / SIGHUP. Kept apart from `runtime.cli` so that
the command's own flow stays readable; `runtime.cli` calls `add_line_flags` and `start_line_tools`."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Optional, Tuple

from runtime.drift import DEFAULT_WINDOW
from runtime.errors import RuntimeInspectError


def add_line_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--drift-window", type=int, default=DEFAULT_WINDOW, metavar="N",
                   help=f"frames in the rolling drift statistics (default {DEFAULT_WINDOW}); a `drift` event when "
                        f"their median or share of alarms leaves the calibrated band (docs/line-learning.md)")
    p.add_argument("--feedback-dir", default=None, metavar="DIR",
                   help="let the live view (--serve) record operator corrections of flagged frames into DIR and "
                        "swap versions (POST, with a token and a loopback Host header); default: read-only")
    p.add_argument("--edit-token-file", default=None, metavar="FILE",
                   help="token the live view's edits must carry (default: a random one, printed at start)")
    p.add_argument("--swap-file", default=None, metavar="PATH",
                   help="watch this file: when it changes (or on SIGHUP) serve the version whose path it holds, "
                        "or roll back when it says 'rollback'; checked before it serves, no frame lost")
    p.add_argument("--swap-key", default=None, metavar="FILE",
                   help="key file: a new version must be signed with it (`python -m train.update --sign-key`)")


def check_line_flags(args: argparse.Namespace) -> None:
    if args.drift_window < 2:
        raise RuntimeInspectError(f"--drift-window must be >= 2 frames, got {args.drift_window}")
    if args.feedback_dir is not None and args.serve is None:
        raise RuntimeInspectError("--feedback-dir records corrections from the live view: add --serve PORT")
    if args.edit_token_file is not None and args.feedback_dir is None:
        raise RuntimeInspectError("--edit-token-file needs --feedback-dir (editing is off without it)")


def start_line_tools(args: argparse.Namespace, inspector: Any) -> Tuple[Optional[Any], Optional[Any]]:
    """(live-view edits or None, swap-file watcher or None) for this run."""
    from runtime.swap import SwapWatcher, read_key  # noqa: PLC0415

    key = read_key(args.swap_key) if args.swap_key else None
    edits = None
    if args.feedback_dir is not None:
        from runtime.serve_feedback import LiveEdits, read_token  # noqa: PLC0415

        token = read_token(args.edit_token_file)
        edits = LiveEdits(inspector, args.feedback_dir, token, key)
        if args.edit_token_file is None:
            print(f"live view edits enabled: token {token}", flush=True)
    watcher = SwapWatcher(inspector, args.swap_file, key).start() if args.swap_file else None
    return edits, watcher


#: Events a person at the console should see as they happen (they are in inspect.jsonl and the live view too).
ANNOUNCED = ("drift", "drift_cleared", "model_swapped", "model_rolled_back", "swap_refused")


def announce(event: Dict[str, Any]) -> None:
    """One stderr line for a drift or version event."""
    if event.get("event") in ANNOUNCED:
        print(f"warning: {event['event']}: {event.get('message', '')}", file=sys.stderr, flush=True)


__all__ = ["add_line_flags", "announce", "check_line_flags", "start_line_tools"]
