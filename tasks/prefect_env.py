"""Prefect start-up defaults (import before prefect; an explicit environment variable always wins).

Logging: flow and task runs log at INFO to the Prefect API (one line per stage of a cycle, shown
in the UI and `prefect flow-run logs`), while Prefect's console handler stays at WARNING, so the
`quorum` commands print only their own tables. A worker started by `prefect worker start` keeps
Prefect's own defaults (INFO on its console too).
"""

import logging
import os
import re

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
    quiet_quorum_errors()


def with_defaults(env: dict[str, str]) -> dict[str, str]:
    """`env` as `apply()` leaves it (a copy)."""
    return {**DEFAULTS, **env}


class QuietQuorumErrors(logging.Filter):
    """Drop Prefect's own report (with its traceback) of a flow or task run that failed with a
    QuorumError: the command prints that error as one clear line. QUORUM_DEBUG=1 keeps them all."""

    _FAILED = re.compile(r"encountered an exception:? (\w+)")

    def filter(self, record: logging.LogRecord) -> bool:
        if os.environ.get("QUORUM_DEBUG") or record.levelno < logging.ERROR:
            return True
        from core.errors import QuorumError

        if record.exc_info and record.exc_info[1] is not None:
            return not isinstance(record.exc_info[1], QuorumError)
        m = self._FAILED.search(record.getMessage())
        return not (m and m.group(1) in _quorum_error_names(QuorumError))


def _quorum_error_names(base: type) -> set[str]:
    names, todo = set(), [base]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


def quiet_quorum_errors() -> None:
    """Install the filter on the loggers Prefect reports run failures with (idempotent)."""
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietQuorumErrors) for f in logger.filters):
            logger.addFilter(QuietQuorumErrors())
