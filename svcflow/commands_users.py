"""`svcflow users`, `svcflow tokens` and `svcflow server`: the directory and the front door.

Registered by svcflow/cli.py.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from engine.errors import InputError


def _directory() -> Any:
    from engine.access import open_gate
    from svcflow.cli import _engine
    from engine.settings import get_settings

    gate = open_gate(_engine(), get_settings())
    return gate.directory, gate.engine.clock


def _roles(text: list[str] | None) -> list[str]:
    """--role a --role b, or --role a,b."""
    return [part.strip() for item in text or [] for part in item.split(",") if part.strip()]


def register(app: typer.Typer) -> None:
    from svcflow.cli import friendly, out

    users = typer.Typer(no_args_is_help=True, help="The user and role directory (roles are lanes).")
    tokens = typer.Typer(no_args_is_help=True, help="API tokens for systems (hashed at rest, scoped to roles).")
    app.add_typer(users, name="users")
    app.add_typer(tokens, name="tokens")

    def show_user(user: Any) -> None:
        state = "active" if user.active else "disabled"
        out.print(escape(f"{user.id} ({user.display_name}): {', '.join(user.roles) or 'no roles'} — {state}"),
                  highlight=False)

    @users.command("add")
    @friendly
    def users_add(user_id: str,
                  name: str | None = typer.Option(None, "--name", help="display name, e.g. 李四"),
                  roles: list[str] | None = typer.Option(None, "--role", help="role (lane id); repeatable"),
                  password: bool = typer.Option(False, "--password", help="ask for an inbox password"),
                  password_env: str | None = typer.Option(None, "--password-env",
                                                          help="read the inbox password from this variable")) -> None:
        """Add a user with roles (and, for the inbox, a password hashed with argon2)."""
        import os

        directory, clock = _directory()
        secret: str | None = None
        if password_env:
            secret = os.environ.get(password_env)
            if not secret:
                raise InputError(f"the environment variable {password_env} is empty or unset")
        elif password:
            secret = getpass.getpass(f"password for {user_id}: ")
        if secret is not None and len(secret) < 8:
            raise InputError("a password needs at least 8 characters")
        show_user(directory.add_user(user_id, name or user_id, _roles(roles), clock.now(), secret))

    @users.command("disable")
    @friendly
    def users_disable(user_id: str) -> None:
        """Disable a user: every action and login is refused from now on (history keeps the name)."""
        directory, clock = _directory()
        show_user(directory.set_active(user_id, False, clock.now()))

    @users.command("enable")
    @friendly
    def users_enable(user_id: str) -> None:
        """Enable a disabled user again."""
        directory, clock = _directory()
        show_user(directory.set_active(user_id, True, clock.now()))

    @users.command("grant")
    @friendly
    def users_grant(user_id: str, roles: list[str] = typer.Argument(..., help="roles (lane ids)")) -> None:
        """Give a user more roles."""
        directory, clock = _directory()
        show_user(directory.grant(user_id, _roles(roles), clock.now()))

    @users.command("revoke")
    @friendly
    def users_revoke(user_id: str, roles: list[str] = typer.Argument(..., help="roles (lane ids)")) -> None:
        """Take roles away from a user."""
        directory, clock = _directory()
        show_user(directory.revoke(user_id, _roles(roles), clock.now()))

    @users.command("password")
    @friendly
    def users_password(user_id: str,
                       password_env: str | None = typer.Option(None, "--password-env")) -> None:
        """Set a user's inbox password."""
        import os

        directory, clock = _directory()
        secret = os.environ.get(password_env, "") if password_env else getpass.getpass(f"password for {user_id}: ")
        directory.set_password(user_id, secret, clock.now())
        out.print(f"password of {escape(user_id)} set")

    @users.command("list")
    @friendly
    def users_list(as_json: bool = typer.Option(False, "--json")) -> None:
        """List users and their roles."""
        directory, _ = _directory()
        rows = directory.users()
        if as_json:
            sys.stdout.write(json.dumps([{"id": u.id, "name": u.display_name, "roles": list(u.roles),
                                          "active": u.active, "password": u.has_password} for u in rows],
                                        ensure_ascii=False, indent=2) + "\n")
            return
        table = Table("user", "name", "roles", "active", "password")
        for u in rows:
            table.add_row(escape(u.id), escape(u.display_name), escape(", ".join(u.roles)),
                          "yes" if u.active else "no", "yes" if u.has_password else "")
        out.print(table)
        if not rows:
            out.print("the directory is empty: names are not checked until a user is added")

    @users.command("audit")
    @friendly
    def users_audit(limit: int = typer.Option(50, "--limit", help="the latest N records"),
                    as_json: bool = typer.Option(False, "--json")) -> None:
        """Refusals outside any case (a refused start, a failed login, a bad token), newest last.
        Refusals on a case are in its history (`svcflow show CASE`)."""
        directory, _ = _directory()
        rows = directory.audit_trail()[-limit:] if limit > 0 else []
        if as_json:
            sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2, default=str) + "\n")
            return
        table = Table("at", "kind", "who", "details")
        for row in rows:
            details = row["details"]
            text = details.get("reason") or ", ".join(f"{k}={v}" for k, v in details.items())
            table.add_row(row["at"].isoformat(timespec="seconds"), escape(row["kind"]), escape(row["principal"]),
                          escape(str(text)))
        out.print(table)

    @users.command("import")
    @friendly
    def users_import(path: Path) -> None:
        """Add or update users from YAML (- {id, name, roles: [...], active, password}) or CSV
        (id,name,roles,active,password; roles separated by ';'). A bad row imports nothing."""
        directory, clock = _directory()
        added, updated = directory.import_file(path, clock.now())
        out.print(f"{added} user(s) added, {updated} updated from {escape(str(path))}")

    @tokens.command("create")
    @friendly
    def tokens_create(name: str = typer.Option(..., "--name", help="the system using it, e.g. crm"),
                      roles: list[str] = typer.Option(..., "--role", help="role (lane id); repeatable")) -> None:
        """Create an API token; its secret is printed once (stdout) and stored only as a hash."""
        directory, clock = _directory()
        token, secret = directory.create_token(name, _roles(roles), clock.now())
        sys.stdout.write(secret + "\n")
        typer.echo(f"token {token.id} for {token.name}: {', '.join(token.roles)} (shown once; keep it secret)",
                   err=True)

    @tokens.command("revoke")
    @friendly
    def tokens_revoke(token_id: str) -> None:
        """Revoke a token: requests with it get 401 from now on."""
        directory, clock = _directory()
        token = directory.revoke_token(token_id, clock.now())
        out.print(f"token {token.id} ({escape(token.name)}) revoked")

    @tokens.command("list")
    @friendly
    def tokens_list() -> None:
        """List tokens (never their secrets)."""
        directory, _ = _directory()
        table = Table("token", "name", "roles", "created", "revoked")
        for t in directory.tokens():
            table.add_row(t.id, escape(t.name), escape(", ".join(t.roles)), t.created_at.isoformat(timespec="seconds"),
                          t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else "")
        out.print(table)

    @app.command("server")
    @friendly
    def server(host: str = typer.Option("127.0.0.1", "--host"),
               port: int = typer.Option(8000, "--port"),
               workers: int = typer.Option(1, "--workers", help="uvicorn worker processes")) -> None:
        """Serve the HTTP API (/api, OpenAPI at /openapi.json) and the staff inbox (/inbox)."""
        import uvicorn

        if workers > 1:
            uvicorn.run("svcflow.server.app:create_app", factory=True, host=host, port=port, workers=workers,
                        log_level="warning", access_log=False)
        else:
            from svcflow.server.app import create_app

            uvicorn.run(create_app(), host=host, port=port, log_level="warning", access_log=False)
