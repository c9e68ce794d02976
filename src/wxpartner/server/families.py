"""Importing this module registers every APIv3 operation, control route and scenario section."""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger("wxpartner.server")

# Each product family adds its route module here.
ROUTE_MODULES = [
    "wxpartner.server.routes.certificates",
    "wxpartner.server.routes.webizpay",
    "wxpartner.server.routes.webizpay_merchants",
    "wxpartner.server.routes.apply4subject",
    "wxpartner.server.routes.recharge",
    "wxpartner.server.control_callbacks",
    "wxpartner.server.ops",
]

for _name in ROUTE_MODULES:
    importlib.import_module(_name)
