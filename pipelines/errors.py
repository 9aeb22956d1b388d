"""Errors the project raises for users: each says what failed and what to do about it."""

from __future__ import annotations


class PipelinesError(Exception):
    """An error meant for a user; the CLI prints its message on one line (or a few) without a
    traceback and exits non-zero."""


class SetupError(PipelinesError):
    """Something `make setup` should have provided is missing (jars, Java, mvn)."""


class BrokerError(PipelinesError):
    """The local Kafka broker could not start, answer or stop."""
