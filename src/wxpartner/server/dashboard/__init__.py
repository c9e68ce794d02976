"""The sandbox dashboard (``/dashboard``): server-rendered pages behind a sandbox-token login.

Family pages reuse the look: ``render_page(title, body_html)`` returns a complete HTML document
(``page(...)`` wraps it in a Starlette HTMLResponse; ``esc`` escapes values you insert).
"""

from __future__ import annotations

from ..web import WEB_ROUTES
from . import callbacks, family_pages  # noqa: F401  (register their pages)
from .layout import badge, card, esc, facts, fen, page, render_page, table
from .pages import ROUTES

__all__ = ["badge", "card", "esc", "facts", "fen", "page", "render_page", "table"]

for _route in ROUTES:
    if _route not in WEB_ROUTES:
        WEB_ROUTES.append(_route)
