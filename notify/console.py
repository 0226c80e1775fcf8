"""Console sink: prints posts as plain text when no Telegram token is set.

It does not record delivery (`records_delivery = False`): posts printed here stay `pending` in the
outbox, so `quorum outbox --send` can deliver them once a token is set.
"""

from __future__ import annotations

import sys
from typing import TextIO

from notify.telegram_html import strip_tags


class ConsoleSink:
    name = "console"
    records_delivery = False
    chat_id: str | None = None

    def __init__(self, stream: TextIO | None = None, *, width: int = 72) -> None:
        self._stream = stream
        self.width = width
        self.printed: list[str] = []

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def send(self, text: str, reply_to_message_id: int | None = None, *, key: str | None = None) -> None:
        plain = strip_tags(text)
        head = f"── post {key} " if key else "── post "
        if reply_to_message_id is not None:
            head += f"(reply to {reply_to_message_id}) "
        out = self.stream
        out.write(head + "─" * max(0, self.width - len(head)) + "\n")
        out.write(plain.rstrip() + "\n")
        out.flush()
        self.printed.append(plain)
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None
