"""A busy machine's timing for the app in a pseudo-terminal: its event loop stalls now and then.

On a loaded machine the app's messages, timers and repaints come in other orders than on a quiet one; a repaint
race that shows once in a hundred runs beside a full test run shows in most runs here. Installed in the app's own
process (``AppTerminal(..., slowed=True)``): before a share of the messages Textual dispatches, the whole loop
sleeps for a random time, as when the process waits for a core. Seeded, so each run draws the same stalls (which
message each meets still varies with the clock).
"""

from __future__ import annotations

import random
import time

from textual.message_pump import MessagePump

SHARE = 0.05  # of dispatched messages that meet a stall
LONGEST = 0.05  # seconds: the longest stall
SEED = 28


def install(share: float = SHARE, longest: float = LONGEST, seed: int = SEED) -> None:
    draw = random.Random(seed)
    dispatch = MessagePump._dispatch_message

    async def stalled_dispatch(self, message):
        if draw.random() < share:
            time.sleep(draw.random() * longest)  # blocks the loop: nothing else of the app runs meanwhile
        return await dispatch(self, message)

    MessagePump._dispatch_message = stalled_dispatch
