"""The signed webhook notifier: a CRM or chat tool receives warnings, breaches and escalations as
signed JSON, retried with back-off, and no endpoint can ever hold up the engine."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.errors import SvcflowError
from engine.run.events import Notify
from engine.run.runtime import Engine
from engine.settings import Settings
from engine.time.clock import FakeClock
from flows.notify import (
    CompositeNotifier, WebhookNotifier, notifier_from_settings, sign, verify_signature,
)
from tests.conftest import MONDAY_9AM

RECEIVER = Path(__file__).parent / "fixtures" / "webhook_receiver.py"
SECRET = "s3cret-shared-with-the-crm"
COMPLAINT = {"customer_id": "C001", "customer_name": "张三", "tier": "gold", "category": "billing",
             "description": "多扣费"}
WARNING = Notify("warned", ("complaint_handler",), "resolution", 1, 50, "half of the resolution time is used")


class Receiver:
    """A receiver process on 127.0.0.1 and the requests it logged."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        self.process = process
        self.log = log
        self.url = f"http://127.0.0.1:{process.stdout.readline().strip()}/hook"  # type: ignore[union-attr]

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.requests()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.requests()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    started: list[subprocess.Popen[str]] = []

    def start(*options: str) -> Receiver:
        log = tmp_path / f"received-{len(started)}.jsonl"
        process = subprocess.Popen([sys.executable, str(RECEIVER), str(log), *options], stdout=subprocess.PIPE,
                                   text=True)
        started.append(process)
        return Receiver(process, log)

    yield start
    for process in started:
        process.kill()
        process.wait(10)


def webhook(*urls: str, **options: object) -> WebhookNotifier:
    settings: dict = {"backoff_seconds": 0.05, "timeout_seconds": 5.0, "clock": FakeClock(MONDAY_9AM), **options}
    return WebhookNotifier(list(urls), SECRET, **settings)


def swept_complaint(url: str, **options: object) -> tuple[WebhookNotifier, list]:
    """A gold complaint left alone for three days, then swept: warnings and breaches."""
    clock = FakeClock(MONDAY_9AM)
    notifier = webhook(url, clock=clock, **options)
    engine = Engine.in_memory(clock=clock, notifier=notifier)
    case_id = engine.start("complaint_handling", COMPLAINT)
    clock.advance(timedelta(days=3))
    # the same sweep also opens the library's scheduled visits: only the complaint's results are asked about
    return notifier, [result for result in engine.sweep() if result[0] == case_id]


def test_each_notification_is_posted_as_json_signed_over_its_timestamp_and_body(receiver):
    crm = receiver()
    notifier, results = swept_complaint(crm.url)
    assert results and notifier.flush(20)
    requests = crm.requests()
    assert requests and notifier.delivered == len(requests) and notifier.dropped == 0
    for request in requests:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        body = request["body"].encode("utf-8")
        expected = hmac.new(SECRET.encode(), headers["x-svcflow-timestamp"].encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        assert headers["x-svcflow-signature"] == f"sha256={expected}"
        assert abs(int(headers["x-svcflow-timestamp"]) - time.time()) < 60
        assert headers["content-type"] == "application/json"
    payloads = [json.loads(r["body"]) for r in requests]
    assert {p["kind"] for p in payloads} >= {"warned", "breached"}
    first = payloads[0]
    assert set(first) == {"case", "process", "kind", "level", "roles", "clock", "percent", "message", "time"}
    assert first["process"] == "complaint_handling" and first["case"] == results[0][0]
    assert first["roles"] and first["percent"] >= 50 and first["time"].startswith("2025-09-25T09:00")


def test_a_failing_endpoint_is_retried_with_growing_delays_until_it_succeeds(receiver):
    flaky = receiver("--fail-first", "2")
    notifier = webhook(flaky.url, backoff_seconds=0.2)
    notifier.notify("CH-1", "complaint_handling", WARNING)
    assert notifier.flush(20)
    requests = flaky.requests()
    assert [r["status"] for r in requests] == [500, 500, 204]
    assert len({r["headers"]["X-Svcflow-Delivery"] for r in requests}) == 1  # one delivery, three tries
    gaps = [b["arrived"] - a["arrived"] for a, b in zip(requests, requests[1:])]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4
    assert notifier.delivered == 1 and notifier.dropped == 0


def test_after_the_last_attempt_a_delivery_is_dropped_with_a_logged_error(receiver, caplog):
    down = receiver("--fail-first", "100")
    notifier = webhook(down.url, attempts=3)
    with caplog.at_level(logging.ERROR, logger="svcflow.flows"):
        notifier.notify("CH-1", "complaint_handling", WARNING)
        assert notifier.flush(20)
    assert len(down.requests()) == 3 and notifier.dropped == 1
    assert any("failed 3 time(s)" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)


def test_a_hanging_endpoint_does_not_hold_up_the_sweep(receiver):
    dead = receiver("--hang")
    notifier, results = swept_complaint(dead.url, timeout_seconds=30.0)
    # the sweep has returned and stored its escalations while the first delivery still waits for an answer
    assert results and notifier.pending() > 0 and notifier.delivered == 0
    assert len(dead.wait_for(1)) == 1


def test_when_the_queue_is_full_a_notification_is_dropped_with_a_logged_error_not_waited_for(receiver, caplog):
    dead = receiver("--hang")
    notifier = webhook(dead.url, timeout_seconds=30.0, queue_size=1)
    notifier.notify("CH-1", "complaint_handling", WARNING)
    dead.wait_for(1)  # the first is in flight; the second waits in the queue; the third has no room
    with caplog.at_level(logging.ERROR, logger="svcflow.flows"):
        notifier.notify("CH-2", "complaint_handling", WARNING)
        notifier.notify("CH-3", "complaint_handling", WARNING)
    assert notifier.dropped == 1
    assert any("queue full" in r.getMessage() and "CH-3" in r.getMessage() for r in caplog.records)


def test_a_receiver_refuses_a_tampered_body_and_a_replayed_old_request():
    body = b'{"case": "CH-1"}'
    timestamp = "1700000000"
    signature = sign(SECRET, timestamp, body)
    assert verify_signature(SECRET, body, timestamp, signature, now=1700000010)
    assert not verify_signature(SECRET, b'{"case": "CH-2"}', timestamp, signature, now=1700000010)
    assert not verify_signature(SECRET, body, timestamp, signature, now=1700000000 + 3600)
    assert not verify_signature("another secret", body, timestamp, signature, now=1700000010)


def test_webhook_urls_and_secret_come_from_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SVCFLOW_WEBHOOK_URLS", "http://127.0.0.1:9/a, http://127.0.0.1:9/b")
    monkeypatch.setenv("SVCFLOW_WEBHOOK_SECRET", SECRET)
    notifier = notifier_from_settings(Settings())
    assert isinstance(notifier, CompositeNotifier)
    (hooks,) = [n for n in notifier.notifiers if isinstance(n, WebhookNotifier)]
    assert hooks.urls == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]


def test_webhook_urls_without_a_secret_are_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SVCFLOW_WEBHOOK_URLS", "http://127.0.0.1:9/a")
    monkeypatch.delenv("SVCFLOW_WEBHOOK_SECRET", raising=False)
    with pytest.raises(SvcflowError, match="SVCFLOW_WEBHOOK_SECRET"):
        notifier_from_settings(Settings())


def test_svcflow_sweep_delivers_its_webhooks_before_it_exits(receiver, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    from typer.testing import CliRunner

    from svcflow.cli import app

    crm = receiver()
    monkeypatch.setenv("SVCFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'svcflow.db'}")
    monkeypatch.setenv("SVCFLOW_WEBHOOK_URLS", crm.url)
    monkeypatch.setenv("SVCFLOW_WEBHOOK_SECRET", SECRET)
    runner = CliRunner()
    start = ["start", "complaint_handling", *(f"--set={k}={v}" for k, v in COMPLAINT.items())]
    assert runner.invoke(app, start).exit_code == 0
    result = runner.invoke(app, ["sweep", "--now", "2030-01-07T17:00:00+08:00"])
    assert result.exit_code == 0, result.output
    delivered = len(crm.requests())
    assert delivered > 0 and f"webhooks: {delivered} delivered, 0 not delivered" in result.output
