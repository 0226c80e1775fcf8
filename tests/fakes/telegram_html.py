"""The check every Telegram post's HTML must pass: only <b>, <i> and <code>, properly nested.

    parsed = check_html(body)   # asserts; parsed.text is the post as the reader sees it
"""

from __future__ import annotations

from html.parser import HTMLParser

ALLOWED_TAGS = {"b", "i", "code"}


class TagChecker(HTMLParser):
    """Collects tags; Telegram HTML must only use a few, properly nested."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: set[str] = set()
        self.ok = True
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.ok = False

    def handle_data(self, data):
        self.text += data


def check_html(body: str) -> TagChecker:
    p = TagChecker()
    p.feed(body)
    p.close()
    assert p.ok and not p.stack, body
    assert p.tags <= ALLOWED_TAGS, p.tags
    return p
