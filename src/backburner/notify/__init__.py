"""Telling people that work is done: the outbox dispatcher and its channels (signed
webhooks, e-mail, Slack, Teams)."""

from backburner.notify.dispatcher import Dispatcher

__all__ = ["Dispatcher"]
