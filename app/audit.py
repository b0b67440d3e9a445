"""Who is making the current change, for the audit trail (the events of admin changes): the
API key's id, 'cli', or '' for the service itself. Set once where a request or command is
authenticated (app/auth.py, the CLI, the console); read by the service layer."""

from __future__ import annotations

from contextvars import ContextVar

actor: ContextVar[str] = ContextVar("livecode_actor", default="")
