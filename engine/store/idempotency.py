"""Idempotency keys: a retried request (a CRM timing out and sending again) gets the first
answer replayed instead of opening a second case or completing twice.

A key is claimed before the work starts (a row with no answer yet), so two copies of one
request racing each other cannot both run: the second sees the claim and is told to retry.
Only successful answers are kept; a failed request releases its key so it can be retried.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from engine.errors import InputError, TaskRefused
from engine.store.sql import Store, utc


class IdempotencyRow(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    principal: str = Field(primary_key=True, max_length=200)
    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int = 0  # 0 while the first request is still being answered
    body: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(index=True)


KEYS = IdempotencyRow.__table__  # type: ignore[attr-defined]
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class StoredAnswer:
    status_code: int
    body: Any


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class IdempotencyKeys:
    def __init__(self, store: Store) -> None:
        self.store = store
        SQLModel.metadata.create_all(store.engine, tables=[KEYS])

    def claim(self, principal: str, key: str, fingerprint: str, now: datetime) -> StoredAnswer | None:
        """None: the key is ours, do the work. Otherwise the answer the first request got."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise InputError(f"an Idempotency-Key must have 1-{MAX_KEY_LENGTH} characters")
        try:
            with self.store.transaction() as conn:
                conn.execute(insert(KEYS).values(principal=principal, key=key, request_hash=fingerprint,
                                                 status_code=0, body="", created_at=utc(now)))
            return None
        except IntegrityError:
            pass
        with self.store.engine.connect() as conn:
            row = conn.execute(select(KEYS).where(KEYS.c.principal == principal, KEYS.c.key == key)).first()
        if row is None:  # released meanwhile: try once more
            return self.claim(principal, key, fingerprint, now)
        if row.request_hash != fingerprint:
            raise InputError(f"the Idempotency-Key '{key}' was used for a different request",
                             hint="use a new key for each distinct request")
        if row.status_code == 0:
            raise TaskRefused(f"a request with the Idempotency-Key '{key}' is still being answered",
                              hint="retry in a moment")
        return StoredAnswer(row.status_code, json.loads(row.body))

    def answer(self, principal: str, key: str, status_code: int, body: Any) -> None:
        with self.store.transaction() as conn:
            conn.execute(update(KEYS).where(KEYS.c.principal == principal, KEYS.c.key == key)
                         .values(status_code=status_code, body=json.dumps(body, ensure_ascii=False, default=str)))

    def release(self, principal: str, key: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(delete(KEYS).where(KEYS.c.principal == principal, KEYS.c.key == key))


__all__ = ["IdempotencyKeys", "StoredAnswer", "request_hash"]
