"""Prefect start-up defaults (import before prefect; an explicit environment variable always wins).

Logging: flow and task runs log at INFO to the Prefect API (one line per stage of a cycle, shown
in the UI and `prefect flow-run logs`), while Prefect's console handler stays at WARNING, so the
`quorum` commands print only their own tables. A worker started by `prefect worker start` keeps
Prefect's own defaults (INFO on its console too).
"""

import os

DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "INFO",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_UI_ENABLED": "false",
}


def apply() -> None:
    for k, v in DEFAULTS.items():
        os.environ.setdefault(k, v)
