"""The user and role directory: people (roles = lanes of the definitions), API tokens for systems,
and an audit trail of refusals that belong to no case (a bad login, a refused start).

Kept beside the case store in its own tables so the transition path never touches it. User ids
are canonical (trimmed, lower-case): the four-eyes rule compares these identities, so "Li" and
"li " are the same person and cannot review their own proposal.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Column, Text, delete, insert, select, update
from sqlmodel import Field, SQLModel

from engine.errors import InputError, NotFound
from engine.run.limits import Limits
from engine.store.sql import Store, aware, utc

USER_ID = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
ROLE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TOKEN_PREFIX = "svcf"
_hasher = PasswordHasher()


class UserRow(SQLModel, table=True):
    __tablename__ = "directory_users"

    id: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(max_length=200)
    roles: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    active: bool = True
    password_hash: str | None = Field(default=None, max_length=200)
    created_at: datetime
    updated_at: datetime


class TokenRow(SQLModel, table=True):
    __tablename__ = "directory_tokens"

    id: str = Field(primary_key=True, max_length=16)
    name: str = Field(index=True, max_length=100)
    secret_hash: str = Field(max_length=64)
    roles: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    created_at: datetime
    revoked_at: datetime | None = None


class AuditRow(SQLModel, table=True):
    """Refusals outside any case (the case log keeps the ones on a case)."""

    __tablename__ = "directory_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    kind: str = Field(max_length=50)
    principal: str = Field(max_length=200)
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False))


USERS = UserRow.__table__  # type: ignore[attr-defined]
TOKENS = TokenRow.__table__  # type: ignore[attr-defined]
AUDIT = AuditRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class User:
    id: str
    display_name: str
    roles: tuple[str, ...]
    active: bool
    has_password: bool


@dataclass(frozen=True)
class ApiToken:
    id: str
    name: str
    roles: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


def canonical_user_id(text: str) -> str:
    """The identity a typed name stands for; the four-eyes rule compares these."""
    return text.strip().lower()


DISPLAY_NAME_CHARS = 200  # the column width (PostgreSQL enforces it; SQLite would store more)
TOKEN_NAME_CHARS = 64  # "token:<name>" is then an actor within the 100-character name limit


def _check_user_id(text: str) -> str:
    user_id = canonical_user_id(text)
    if not USER_ID.match(user_id):
        raise InputError(f"{Limits.clip(text, 80)!r} is not a valid user id",
                         hint="use 1-64 letters, digits and . _ @ - (starting with a letter or digit)")
    return user_id


def _check_display_name(name: str, user_id: str) -> str:
    name = name.strip() or user_id
    if len(name) > DISPLAY_NAME_CHARS:
        raise InputError(f"the display name of '{user_id}' is {len(name):,} characters, more than "
                         f"{DISPLAY_NAME_CHARS}", hint="give a shorter name (--name)")
    return name


def _check_roles(roles: list[str], known: set[str] | None) -> list[str]:
    result: list[str] = []
    for role in roles:
        role = role.strip()
        if not ROLE_ID.match(role):
            raise InputError(f"{Limits.clip(role, 80)!r} is not a valid role id", hint="roles are lane ids such as front_desk")
        if known is not None and role not in known:
            raise InputError(f"role '{role}' is not a lane of any process definition",
                             hint="known roles: " + ", ".join(sorted(known)[:40]))
        if role not in result:
            result.append(role)
    return result


def _user(row: Any) -> User:
    return User(row.id, row.display_name, tuple(json.loads(row.roles)), bool(row.active), row.password_hash is not None)


class Directory:
    """Users, tokens and the audit trail in the svcflow store (SQLite or PostgreSQL)."""

    def __init__(self, store: Store, known_roles: set[str] | None = None, *, token_cache_seconds: float = 0.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """`token_cache_seconds` > 0 (the server): a live token's row is re-read at most that often.

        Every API request verifies its token; the cache saves that query. A revocation through this
        Directory takes effect at once; one made by another process (`svcflow tokens revoke`) is seen
        when the cached row expires, i.e. within `token_cache_seconds`. Unknown, revoked and wrong
        secrets are never cached, so only live tokens (a handful of rows) are held."""
        self.store = store
        self.known_roles = known_roles
        SQLModel.metadata.create_all(store.engine, tables=[USERS, TOKENS, AUDIT])
        mark = ":id" if store.dialect == "sqlite" else "%(id)s"
        self._token_sql = f"SELECT name, secret_hash, roles, created_at, revoked_at FROM directory_tokens WHERE id = {mark}"
        self._token_ttl = token_cache_seconds
        self._monotonic = monotonic
        self._live_tokens: dict[str, tuple[float, str, ApiToken]] = {}  # id -> (expires, secret hash, token)
        self._live_lock = threading.Lock()  # the server verifies on its event loop and revokes on worker threads
        self._revocations = 0  # a row read before a revocation here is not cached after it

    # -- users -----------------------------------------------------------------------------------
    def has_users(self) -> bool:
        with self.store.engine.connect() as conn:
            return conn.execute(select(USERS.c.id).limit(1)).first() is not None

    def add_user(self, user_id: str, display_name: str, roles: list[str], now: datetime,
                 password: str | None = None) -> User:
        uid = _check_user_id(user_id)
        checked = _check_roles(roles, self.known_roles)
        values = dict(display_name=_check_display_name(display_name, uid), roles=json.dumps(checked), active=True,
                      password_hash=_hasher.hash(password) if password else None, updated_at=utc(now))
        with self.store.transaction() as conn:
            if conn.execute(select(USERS.c.id).where(USERS.c.id == uid)).first() is not None:
                raise InputError(f"user '{uid}' already exists",
                                 hint="use `svcflow users grant` to add roles, or choose another id")
            conn.execute(insert(USERS).values(id=uid, created_at=utc(now), **values))
        return self.user(uid)

    def user(self, user_id: str) -> User:
        found = self.find_user(user_id)
        if found is None:
            raise NotFound(f"no user '{user_id}' in the directory", hint="list users with `svcflow users list`")
        return found

    def find_user(self, user_id: str) -> User | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(USERS).where(USERS.c.id == canonical_user_id(user_id))).first()
        return _user(row) if row is not None else None

    def users(self) -> list[User]:
        with self.store.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(USERS).order_by(USERS.c.id)).all()]

    def users_with_role(self, role: str) -> list[User]:
        return [u for u in self.users() if role in u.roles and u.active]

    def _change(self, user_id: str, now: datetime, **values: Any) -> User:
        uid = self.user(user_id).id
        with self.store.transaction() as conn:
            conn.execute(update(USERS).where(USERS.c.id == uid).values(updated_at=utc(now), **values))
        return self.user(uid)

    def set_active(self, user_id: str, active: bool, now: datetime) -> User:
        return self._change(user_id, now, active=active)

    def grant(self, user_id: str, roles: list[str], now: datetime) -> User:
        current = list(self.user(user_id).roles)
        return self._change(user_id, now, roles=json.dumps(_check_roles(current + roles, self.known_roles)))

    def revoke(self, user_id: str, roles: list[str], now: datetime) -> User:
        user = self.user(user_id)
        missing = [r for r in roles if r not in user.roles]
        if missing:
            raise InputError(f"user '{user.id}' does not hold {', '.join(missing)}",
                             hint=f"they hold: {', '.join(user.roles) or 'no roles'}")
        return self._change(user_id, now, roles=json.dumps([r for r in user.roles if r not in roles]))

    def set_password(self, user_id: str, password: str, now: datetime) -> User:
        if len(password) < 8:
            raise InputError("a password needs at least 8 characters")
        return self._change(user_id, now, password_hash=_hasher.hash(password))

    def check_password(self, user_id: str, password: str) -> User | None:
        """The user if the password is theirs and they are active; None otherwise (no hint which)."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(USERS).where(USERS.c.id == canonical_user_id(user_id))).first()
        if row is None or not row.password_hash or not row.active:
            _hasher.hash("timing")  # the same cost whether or not the user exists
            return None
        try:
            _hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return _user(row)

    def import_file(self, path: Path, now: datetime) -> tuple[int, int]:
        """Add or update users from YAML (a list of {id, name, roles, active, password}) or CSV
        (columns id,name,roles with roles separated by ';'). All rows are checked first: a bad row
        imports nothing. Returns (added, updated)."""
        text = _read_staff_file(path)
        rows = _read_csv(text, path) if path.suffix.lower() == ".csv" else _read_yaml(text, path)
        checked: list[tuple[str, str, list[str], bool, str | None]] = []
        for line, row in rows:
            where = f"{path}:{line}"
            try:
                uid = _check_user_id(str(row.get("id") or ""))
                roles = _check_roles([str(r) for r in row.get("roles") or []], self.known_roles)
                name = _check_display_name(str(row.get("name") or ""), uid)
            except InputError as exc:
                raise InputError(f"{where}: {exc.message}", hint=exc.hint) from None
            password = row.get("password")
            if password is not None and len(str(password)) < 8:
                raise InputError(f"{where}: the password of '{uid}' needs at least 8 characters")
            checked.append((uid, name, roles, bool(row.get("active", True)),
                            str(password) if password is not None else None))
        added = updated = 0
        for uid, name, roles, active, password in checked:
            if self.find_user(uid) is None:
                self.add_user(uid, name, roles, now, password)
                if not active:
                    self.set_active(uid, False, now)
                added += 1
            else:
                values: dict[str, Any] = dict(display_name=name, roles=json.dumps(roles), active=active)
                if password:
                    values["password_hash"] = _hasher.hash(password)
                self._change(uid, now, **values)
                updated += 1
        return added, updated

    # -- tokens ----------------------------------------------------------------------------------
    def create_token(self, name: str, roles: list[str], now: datetime) -> tuple[ApiToken, str]:
        """A new token and its secret text, which is shown once and stored only as a hash."""
        if not name.strip():
            raise InputError("a token needs a name (what system uses it)", hint="e.g. --name crm")
        if len(name.strip()) > TOKEN_NAME_CHARS:
            raise InputError(f"a token name is at most {TOKEN_NAME_CHARS} characters, this one has "
                             f"{len(name.strip()):,}", hint="name the system briefly, e.g. --name crm")
        checked = _check_roles(roles, self.known_roles)
        if not checked:
            raise InputError("a token needs at least one role", hint="e.g. --role front_desk")
        token_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        with self.store.transaction() as conn:
            conn.execute(insert(TOKENS).values(id=token_id, name=name.strip(), secret_hash=_digest(secret),
                                               roles=json.dumps(checked), created_at=utc(now)))
        return self.token(token_id), f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def token(self, token_id: str) -> ApiToken:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(TOKENS).where(TOKENS.c.id == token_id)).first()
        if row is None:
            raise NotFound(f"no API token '{token_id}'", hint="list tokens with `svcflow tokens list`")
        return ApiToken(row.id, row.name, tuple(json.loads(row.roles)), aware(row.created_at),  # type: ignore[arg-type]
                        aware(row.revoked_at))

    def tokens(self) -> list[ApiToken]:
        with self.store.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(select(TOKENS.c.id).order_by(TOKENS.c.created_at)).all()]
        return [self.token(i) for i in ids]

    def revoke_token(self, token_id: str, now: datetime) -> ApiToken:
        self.token(token_id)
        with self._live_lock:
            self._revocations += 1
            self._live_tokens.pop(token_id, None)
        with self.store.transaction() as conn:
            conn.execute(update(TOKENS).where(TOKENS.c.id == token_id).values(revoked_at=utc(now)))
        with self._live_lock:  # a verification that read the row meanwhile must not keep it
            self._revocations += 1
            self._live_tokens.pop(token_id, None)
        return self.token(token_id)

    def verify_token(self, text: str) -> ApiToken | None:
        """The live token this secret text belongs to, or None."""
        parts = text.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            return None
        token_id, digest = parts[1], _digest(parts[2])
        with self._live_lock:
            cached = self._live_tokens.get(token_id)
            generation = self._revocations
        if cached is not None and cached[0] > self._monotonic():  # only held when token_cache_seconds > 0
            return cached[2] if hmac.compare_digest(cached[1], digest) else None
        # every API request without a cached row asks this: driver SQL, as the store does for its hot reads
        row = self.store._fetch_one(self._token_sql, {"id": token_id})
        if row is None or row[4] is not None:
            return None
        name, secret_hash, roles, _created, _revoked = row
        if not hmac.compare_digest(secret_hash, digest):
            return None
        token = ApiToken(token_id, name, tuple(json.loads(roles)), _when(_created), None)
        if self._token_ttl > 0:
            with self._live_lock:
                if generation == self._revocations:
                    self._live_tokens[token_id] = (self._monotonic() + self._token_ttl, secret_hash, token)
        return token

    # -- audit -----------------------------------------------------------------------------------
    def audit(self, kind: str, principal: str, details: dict[str, Any], now: datetime) -> None:
        with self.store.transaction() as conn:
            conn.execute(insert(AUDIT).values(at=utc(now), kind=kind, principal=Limits.clip(principal, 150),
                                              details=json.dumps(details, ensure_ascii=False, default=str)))

    def audit_trail(self) -> list[dict[str, Any]]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(AUDIT).order_by(AUDIT.c.id)).mappings().all()
        return [{**dict(r), "at": aware(r["at"]), "details": json.loads(r["details"])} for r in rows]

    def delete_everything(self) -> None:
        """For tests only."""
        with self._live_lock:
            self._live_tokens.clear()
        with self.store.transaction() as conn:
            for table in (AUDIT, TOKENS, USERS):
                conn.execute(delete(table))


def _when(value: Any) -> datetime:
    """A driver-level timestamp: text on SQLite (stored in UTC), a datetime on PostgreSQL."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return aware(value)  # type: ignore[return-value]


def _digest(secret: str) -> str:
    """Tokens carry 256 random bits, so a plain SHA-256 is enough at rest (argon2 is for passwords)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


IMPORT_FILE_BYTES = 10 * 1024 * 1024  # some 100,000 users; more is not a staff list


def _read_staff_file(path: Path) -> str:
    """The file's text: UTF-8 with or without a BOM (Excel's "CSV UTF-8"); GBK and others are
    refused at their line with the same hint as a definition file."""
    from engine.definition.yaml_source import decode
    from engine.errors import DefinitionError

    try:
        with path.open("rb") as handle:
            raw = handle.read(IMPORT_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > IMPORT_FILE_BYTES:
        raise InputError(f"{path} is larger than {IMPORT_FILE_BYTES:,} bytes", hint="split it into several files")
    try:
        return decode(raw, str(path))
    except DefinitionError as exc:
        problem = exc.problems[0]
        where = f"{path}:{problem.line}" if problem.line else str(path)
        raise InputError(f"{where}: {problem.message}", hint=problem.hint) from None


def _read_yaml(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        loaded = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        if "'\\t'" in str(getattr(exc, "problem", "")):  # "found character '\t' that cannot start any token"
            raise InputError(f"{path}{line}: not valid YAML: the line is indented with a tab",
                             hint="YAML indentation must use spaces: replace the tab by spaces") from None
        raise InputError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', None) or 'unreadable'}",
                         hint="- {id: li, name: 李四, roles: [front_desk]}") from None
    if isinstance(data, dict) and "users" in data:
        data = data["users"]
        loaded = next((v for k, v in loaded.value if k.value == "users"), loaded) if loaded else loaded
    if not isinstance(data, list) or loaded is None:
        raise InputError(f"{path}: expected a list of users", hint="- {id: li, name: 李四, roles: [front_desk]}")
    result: list[tuple[int, dict[str, Any]]] = []
    for node, item in zip(loaded.value, data, strict=True):
        line = node.start_mark.line + 1
        if not isinstance(item, dict):
            raise InputError(f"{path}:{line}: each user is a mapping with id, name and roles")
        roles = item.get("roles") or []
        item = {**item, "roles": roles.split(";") if isinstance(roles, str) else list(roles)}
        result.append((line, item))
    return result


def _read_csv(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "id" not in reader.fieldnames:
        raise InputError(f"{path}:1: the CSV needs a header with at least id (and name, roles, active, password)")
    result: list[tuple[int, dict[str, Any]]] = []
    for row in reader:
        roles = [r.strip() for r in (row.get("roles") or "").replace(",", ";").split(";") if r.strip()]
        active = (row.get("active") or "true").strip().lower() not in ("false", "no", "0", "n")
        password = (row.get("password") or "").strip() or None
        result.append((reader.line_num, {"id": row.get("id"), "name": row.get("name"), "roles": roles,
                                         "active": active, "password": password}))
    return result


__all__ = ["ApiToken", "Directory", "User", "canonical_user_id"]
