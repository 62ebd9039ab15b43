"""Notifications and SLA events as Prefect sees them.

Every notification is a log line and a Prefect event, so Prefect automations can route it
(chat, pager, a deployment run) without svcflow knowing the channel; e-mail and signed webhooks
(a CRM, a chat tool) are more notifiers for desks without automations. Notifiers compose, and a
failing channel never fails nor blocks the sweep that triggered it: the escalation is already stored.
Prefect is imported only when an event is emitted, so the CLI can use the other channels cheaply.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import smtplib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from engine.errors import SvcflowError
from engine.run.events import Notify
from engine.run.runtime import LogNotifier, Notifier
from engine.run.log import LogEntry
from engine.time.clock import Clock, SystemClock

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
        from prefect.events import emit_event

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


SIGNATURE_HEADER = "X-Svcflow-Signature"
TIMESTAMP_HEADER = "X-Svcflow-Timestamp"
DELIVERY_HEADER = "X-Svcflow-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over "<timestamp>.<body>": the timestamp is signed, so a captured
    request cannot be replayed later with a fresh timestamp."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, body: bytes, timestamp: str, signature: str, *, now: float,
                     tolerance_seconds: float = 300.0) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent (no replay)."""
    try:
        age = abs(now - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_seconds and hmac.compare_digest(sign(secret, timestamp, body), signature)


def webhook_payload(case_id: str, process_id: str, command: Notify, at: str) -> dict[str, Any]:
    return {"case": case_id, "process": process_id, "kind": command.kind, "level": command.level,
            "roles": list(command.roles), "clock": command.clock, "percent": command.percent,
            "message": command.message, "time": at}


@dataclass(frozen=True)
class _Delivery:
    url: str
    body: bytes
    delivery_id: str
    case_id: str


class WebhookNotifier:
    """POST each warning, breach and escalation as signed JSON to every configured URL.

    `notify` only queues: delivery happens on a background thread, so a slow or dead endpoint
    never blocks the sweep or a user's action. Each delivery is tried `attempts` times with
    exponential back-off (`backoff_seconds`, doubled each time, at most `max_backoff_seconds`);
    after the last failure, or when the bounded queue is full, it is dropped with a logged error.
    Retries carry the same X-Svcflow-Delivery id, so receivers can ignore duplicates.
    """

    def __init__(self, urls: Sequence[str], secret: str, *, clock: Clock | None = None, attempts: int = 5,
                 backoff_seconds: float = 1.0, max_backoff_seconds: float = 60.0, timeout_seconds: float = 5.0,
                 queue_size: int = 1000, wall: Callable[[], float] = time.time) -> None:
        if not secret:
            raise SvcflowError("a webhook notifier needs a secret to sign with",
                               hint="set SVCFLOW_WEBHOOK_SECRET")
        self.urls = list(urls)
        self._secret = secret
        self.clock = clock or SystemClock()
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.wall = wall  # the real time for the replay timestamp, even when the engine's clock is virtual
        self._queue: queue.Queue[_Delivery] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.dropped = 0

    def notify(self, case_id: str, process_id: str, command: Notify) -> None:
        payload = webhook_payload(case_id, process_id, command, self.clock.now().isoformat())
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        self._start()
        for url in self.urls:
            delivery = _Delivery(url, body, uuid.uuid4().hex, case_id)
            try:
                self._queue.put_nowait(delivery)
            except queue.Full:
                self.dropped += 1
                log.error("webhook queue full (%d waiting): dropped the %s notification of case %s for %s",
                          self._queue.maxsize, command.kind, case_id, url)

    def pending(self) -> int:
        """Deliveries queued or in flight."""
        return self._queue.unfinished_tasks

    def flush(self, timeout: float) -> bool:
        """Wait until every queued delivery is done (delivered or dropped); False on timeout.

        For short-lived processes such as `svcflow sweep`, which would otherwise exit with
        notifications still queued.
        """
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the background thread --------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._work, name="svcflow-webhooks", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        with httpx.Client(timeout=self.timeout_seconds) as client:
            while not self._stop.is_set():
                try:
                    delivery = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    self._deliver(client, delivery)
                finally:
                    self._queue.task_done()

    def _deliver(self, client: httpx.Client, delivery: _Delivery) -> None:
        problem = ""
        for attempt in range(1, self.attempts + 1):
            timestamp = str(int(self.wall()))
            headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                       SIGNATURE_HEADER: sign(self._secret, timestamp, delivery.body),
                       DELIVERY_HEADER: delivery.delivery_id, "User-Agent": "svcflow-webhook"}
            try:
                response = client.post(delivery.url, content=delivery.body, headers=headers)
                if 200 <= response.status_code < 300:
                    self.delivered += 1
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                delay = min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)
                log.warning("webhook %s for case %s failed (%s); retry %d of %d in %.1f s", delivery.url,
                            delivery.case_id, problem, attempt, self.attempts - 1, delay)
                if self._stop.wait(delay):
                    break
        self.dropped += 1
        log.error("webhook %s for case %s failed %d time(s), last: %s; dropped delivery %s", delivery.url,
                  delivery.case_id, self.attempts, problem, delivery.delivery_id)


def webhook_notifier_from_settings(settings: Any) -> WebhookNotifier | None:
    """The webhook channel when SVCFLOW_WEBHOOK_URLS is set; a URL without a secret is refused."""
    urls = list(getattr(settings, "webhook_urls", None) or [])
    if not urls:
        return None
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if not secret:
        raise SvcflowError("SVCFLOW_WEBHOOK_URLS is set but SVCFLOW_WEBHOOK_SECRET is not: webhooks must be signed",
                           hint="set SVCFLOW_WEBHOOK_SECRET to a long random string shared with the receivers")
    from engine.time.clock import clock_from_spec

    return WebhookNotifier(urls, secret, clock=clock_from_spec(settings.clock), attempts=settings.webhook_attempts,
                           backoff_seconds=settings.webhook_backoff_seconds,
                           timeout_seconds=settings.webhook_timeout_seconds, queue_size=settings.webhook_queue_size)


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
    """Events always; e-mail too when an SMTP host is configured, webhooks when URLs are."""
    notifiers: list[Notifier] = [PrefectEventNotifier()]
    if getattr(settings, "smtp_host", None):
        notifiers.append(SmtpNotifier(settings.smtp_host, settings.smtp_port, settings.smtp_sender,
                                      settings.role_emails))
    webhooks = webhook_notifier_from_settings(settings)
    if webhooks is not None:
        notifiers.append(webhooks)
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
    "CompositeNotifier", "PrefectEventNotifier", "SLA_EVENTS", "SmtpNotifier", "WebhookNotifier", "case_resource",
    "emit_sla_events", "notifier_from_settings", "sign", "sla_rows", "verify_signature", "webhook_notifier_from_settings",
]
