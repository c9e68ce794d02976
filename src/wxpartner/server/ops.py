"""Sandbox operations, wired into every AppState: journal, faults, metrics, logs, control API, dashboard.

Listed in server/families.py, so importing the families registers all of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

from ..sandbox import faults_section  # noqa: F401  (the scenario files' faults: section)
from . import control_ops, dashboard, logs, metrics  # noqa: F401  (registers control routes and pages)
from .app import BACKGROUND_TASKS, SCENARIO_LOADED_HOOKS, STARTUP_HOOKS, STOP_HOOKS
from .faults import injector
from .journal import flush_loop, writer
from .web import WEB_ROUTES

if TYPE_CHECKING:
    from .app import AppState


def install(state: AppState) -> None:
    logs.configure_from_env()
    state.before_handlers.append(injector(state))
    state.observers.append(metrics.observe)
    state.observers.append(writer(state).observe)
    state.observers.append(logs.observe)


def _last_flush(state: AppState) -> None:
    writer(state).flush()  # answers given while the tasks stopped: a request cut off by a forced stop


def _scenario_loaded(state: AppState) -> None:
    injector(state).invalidate()  # a faults: section's rules apply to the next request


if install not in STARTUP_HOOKS:
    STARTUP_HOOKS.append(install)
    SCENARIO_LOADED_HOOKS.append(_scenario_loaded)
    BACKGROUND_TASKS.append(flush_loop)
    STOP_HOOKS.append(_last_flush)
    WEB_ROUTES.append(Route("/metrics", metrics.metrics_endpoint))
