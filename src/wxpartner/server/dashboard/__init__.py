"""The sandbox dashboard (``/dashboard``): server-rendered pages behind a sandbox-token login.

Family pages reuse the look: ``render_page(title, body_html)`` returns a complete HTML document
(``page(...)`` wraps it in a Starlette HTMLResponse; ``esc`` escapes values you insert).
"""

from __future__ import annotations

from ..web import WEB_ROUTES
from . import (  # noqa: F401  (each page module registers its routes)
    applyments,
    callbacks,
    cards,
    clock,
    data_browser,
    employees,
    faults,
    journal,
    login,
    merchants,
    overview,
    recharge,
)
from .layout import badge, card, esc, facts, fen, page, render_page, table
from .routing import ROUTES

__all__ = ["badge", "card", "esc", "facts", "fen", "page", "render_page", "table"]

for _route in ROUTES:
    if _route not in WEB_ROUTES:
        WEB_ROUTES.append(_route)
