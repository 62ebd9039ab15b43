"""Notifications and SLA events as Prefect sees them.

Every notification is a log line and a Prefect event, so Prefect automations can route it
(chat, pager, a deployment run) without svcflow knowing the channel; e-mail is one more
notifier for desks without automations. Notifiers compose, and a failing channel never fails
the sweep that triggered it: the escalation is already stored.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Iterable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any

from prefect.events import emit_event

from engine.run.events import Notify
from engine.run.runtime import LogNotifier, Notifier
from engine.run.log import LogEntry

log = logging.getLogger("svcflow.flows")

SLA_EVENTS: dict[str, str] = {
    "sla_warned": "svcflow.sla.warned",
    "sla_breached": "svcflow.sla.breached",
    "escalated": "svcflow.case.escalated",
}


def case_resource(case_id: str, process_id: str) -> dict[str, str]:
    """The Prefect resource of a case: automations match on `svcflow.case.*` and the process label."""
    return {
        "prefect.resource.id": f"svcflow.case.{case_id}",
        "prefect.resource.name": f"{process_id}-{case_id}",
        "svcflow.process": process_id,
        "svcflow.case": case_id,
    }


def _emit(event: str, resource: dict[str, str], payload: dict[str, Any]) -> None:
    try:
        emit_event(event=event, resource=resource, payload=payload)
    except Exception as exc:  # events are for operators; the store already holds the fact
        log.warning("could not emit %s for %s: %s", event, resource.get("prefect.resource.id"), exc)


class PrefectEventNotifier(LogNotifier):
    """Log + Prefect event `svcflow.notification.<kind>`: the default, routed by automations."""

    def notify(self, case_id: str, process_id: str, command: Notify) -> None:
        super().notify(case_id, process_id, command)
        _emit(f"svcflow.notification.{command.kind}", case_resource(case_id, process_id), {
            "clock": command.clock, "level": command.level, "percent": command.percent,
            "roles": list(command.roles), "message": command.message,
        })


SmtpFactory = Callable[[str, int], Any]


class SmtpNotifier:
    """E-mail to the addresses configured per role (settings `role_emails`); roles without any are skipped."""

    def __init__(self, host: str, port: int = 25, sender: str = "svcflow@localhost",
                 role_emails: Mapping[str, Sequence[str]] | None = None,
                 smtp_factory: SmtpFactory | None = None) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.role_emails = {role: list(addresses) for role, addresses in (role_emails or {}).items()}
        self.smtp_factory: SmtpFactory = smtp_factory or (lambda h, p: smtplib.SMTP(h, p, timeout=10))

    def recipients(self, roles: Iterable[str]) -> list[str]:
        seen: list[str] = []
        for role in roles:
            for address in self.role_emails.get(role, []):
                if address not in seen:
                    seen.append(address)
        return seen

    def message(self, case_id: str, process_id: str, command: Notify) -> EmailMessage | None:
        to = self.recipients(command.roles)
        if not to:
            return None
        kinds = {"warned": "SLA 预警 / SLA warning", "breached": "SLA 超时 / SLA breached",
                 "escalated": "升级 / Escalated"}
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(to)
        msg["Subject"] = f"[svcflow] {kinds.get(command.kind, command.kind)} {process_id}-{case_id} " \
                         f"(level {command.level}, {command.percent} %)"
        msg.set_content(f"{command.message}\n\ncase: {case_id}\nprocess: {process_id}\nclock: {command.clock}\n"
                        f"roles: {', '.join(command.roles)}\n\n`svcflow show {case_id}`\n")
        return msg

    def notify(self, case_id: str, process_id: str, command: Notify) -> None:
        msg = self.message(case_id, process_id, command)
        if msg is None:
            return
        try:
            with self.smtp_factory(self.host, self.port) as smtp:
                smtp.send_message(msg)
        except Exception as exc:  # a mail outage must not undo or block the escalation
            log.error("could not e-mail %s about %s: %s", msg["To"], case_id, exc)


class CompositeNotifier:
    """Several channels at once; one failing does not stop the others."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = list(notifiers)

    def notify(self, case_id: str, process_id: str, command: Notify) -> None:
        for notifier in self.notifiers:
            try:
                notifier.notify(case_id, process_id, command)
            except Exception as exc:
                log.error("notifier %s failed for %s: %s", type(notifier).__name__, case_id, exc)


def notifier_from_settings(settings: Any) -> Notifier:
    """Events always; e-mail too when an SMTP host is configured."""
    notifiers: list[Notifier] = [PrefectEventNotifier()]
    if getattr(settings, "smtp_host", None):
        notifiers.append(SmtpNotifier(settings.smtp_host, settings.smtp_port, settings.smtp_sender,
                                      settings.role_emails))
    return notifiers[0] if len(notifiers) == 1 else CompositeNotifier(notifiers)


def sla_rows(results: Iterable[tuple[str, list[LogEntry]]]) -> list[dict[str, Any]]:
    """One row per warning, breach and escalation of a sweep, with the roles told at that level."""
    rows: list[dict[str, Any]] = []
    for case_id, events in results:
        escalations = {(e.data.get("clock"), e.data.get("percent")): e for e in events if e.type == "escalated"}
        for e in events:
            if e.type not in SLA_EVENTS:
                continue
            match = e if e.type == "escalated" else escalations.get((e.data.get("clock"), e.data.get("percent")))
            roles = list(match.data.get("notify", [])) if match is not None else []
            actions = {k: match.data[k] for k in ("reassign", "raise_priority", "route")
                       if match is not None and k in match.data}
            rows.append({
                "case": case_id, "process": e.process_id, "event": e.type, "node": e.node or "",
                "clock": e.data.get("clock", ""), "level": e.data.get("level", 0),
                "percent": e.data.get("percent", 0), "roles": roles, "actions": actions,
                "kind": e.data.get("kind", e.type.removeprefix("sla_")), "at": e.at.isoformat(),
            })
    return rows


def emit_sla_events(rows: Iterable[dict[str, Any]]) -> int:
    """`svcflow.sla.warned` / `svcflow.sla.breached` / `svcflow.case.escalated`, one per log entry."""
    count = 0
    for row in rows:
        payload = {k: row[k] for k in ("clock", "level", "percent", "roles", "node", "kind", "at", "actions")}
        _emit(SLA_EVENTS[row["event"]], case_resource(row["case"], row["process"]), payload)
        count += 1
    return count


__all__ = [
    "CompositeNotifier", "PrefectEventNotifier", "SLA_EVENTS", "SmtpNotifier", "case_resource", "emit_sla_events",
    "notifier_from_settings", "sla_rows",
]
