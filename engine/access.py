"""Who may change what: the rules every state-changing entry point (CLI, HTTP API, inbox, Prefect
resume) applies before calling `Engine`, so they all refuse the same people for the same reasons.

The rules, with "holds" meaning the directory grants the role to the user (or scopes the token to it):

| action | allowed when the principal... |
|---|---|
| start a case | holds a lane of the process, or a supervisor role |
| complete / claim a task | acts in a role they hold that the task accepts (its role, an escalation role), or is its assignee |
| assign a task to someone else | holds a supervisor role; the assignee is an active user holding the task's role |
| send a message | holds a lane of the case's process, or a supervisor role |
| update case data | holds the role of an open task on the case (or is its assignee), or a supervisor role |
| cancel a case | holds a supervisor role |

Unknown and disabled users are refused everything. Each refusal is recorded: on the case's log
(a `refused` event naming who tried) when there is a case, else in the directory's audit trail.
The rules apply once the directory has a user (or always with SVCFLOW_DIRECTORY=required); an
empty directory keeps the free-typed names of a first try-out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.definition.library import ProcessLibrary
from engine.errors import AccessDenied, InputError, NotFound, TaskRefused
from engine.messages import say
from engine.run.limits import Limits
from engine.run.events import CompleteTask
from engine.run.runtime import Engine
from engine.run.state import InstanceState, Task
from engine.settings import Settings
from engine.store.directory import Directory, canonical_user_id


@dataclass(frozen=True)
class Principal:
    """Who acts: a directory user, an API token, or (directory not enforced) a typed name.

    kind is "user", "token", "unknown", "disabled" or "unchecked"."""

    id: str
    roles: frozenset[str]
    kind: str
    display_name: str = ""

    @property
    def known(self) -> bool:
        return self.kind in ("user", "token", "unchecked")


def library_roles(library: ProcessLibrary) -> set[str]:
    """Every lane of every process: the roles the directory may grant."""
    return {lane for loaded in library.latest.values() for lane in loaded.definition.lane_ids()}


def open_gate(engine: Engine, settings: Settings) -> Gate:
    """The gate the CLI, the server and the Prefect resume use, configured from SVCFLOW_* settings."""
    known = library_roles(engine.library) | set(settings.supervisor_roles)
    return Gate(engine, Directory(engine.store, known), supervisor_roles=settings.supervisor_roles,
                required=settings.directory == "required")


class Gate:
    """The authorisation rules in front of `Engine`; refusals are recorded, then raised."""

    def __init__(self, engine: Engine, directory: Directory, *, supervisor_roles: Iterable[str] = (),
                 required: bool = False) -> None:
        self.engine = engine
        self.directory = directory
        self.supervisor_roles = frozenset(supervisor_roles)
        self.required = required

    @property
    def enforced(self) -> bool:
        return self.required or self.directory.has_users()

    # -- principals ----------------------------------------------------------------------------
    def principal(self, name: str | None) -> Principal:
        """The principal a typed name (`--as`, the Prefect form's Actor) stands for."""
        if not self.enforced:
            return Principal(name or "", frozenset(), "unchecked", name or "")
        if not name or not name.strip():
            return Principal("", frozenset(), "unknown")
        user = self.directory.find_user(name)
        if user is None:
            return Principal(name.strip(), frozenset(), "unknown")
        return Principal(user.id, frozenset(user.roles), "user" if user.active else "disabled", user.display_name)

    def token_principal(self, name: str, roles: Iterable[str]) -> Principal:
        return Principal(f"token:{name}", frozenset(roles), "token", name)

    def user_principal(self, user_id: str) -> Principal:
        return self.principal(user_id) if self.enforced else Principal(canonical_user_id(user_id), frozenset(), "unknown")

    # -- actions -------------------------------------------------------------------------------
    def start(self, who: Principal, process_id: str, data: Mapping[str, Any] | None = None,
              case_id: str | None = None) -> str:
        if self.enforced:
            lanes = self.engine.library.get(process_id).definition.lane_ids()
            self._known(who, "start", None, process=process_id)
            if not (who.roles & (lanes | self.supervisor_roles)):
                self._refuse(who, "start", None, f"{who.id} holds no role of process '{process_id}'",
                             "a lane of the process or a supervisor role is needed", process=process_id)
        return self.engine.start(process_id, data, actor=who.id or None, case_id=case_id)

    def complete(self, who: Principal, task_id: str, data: Mapping[str, Any] | None = None,
                 role: str | None = None) -> InstanceState:
        if not self.enforced:
            if not role:
                raise InputError("say which role you act in", hint="add --role ROLE")
            return self.engine.complete(task_id, actor=who.id, role=role, data=data)
        state, version, task = self._task(task_id)
        role = self._acting_role(who, "complete", state, task, role)
        # Engine.complete's own call, on the state just loaded for the rule (one load, not two; a
        # concurrent change still fails the engine's version check)
        return self.engine.act(state.case_id, CompleteTask(task_id, who.id, role, dict(data or {})),
                               node=task.node, loaded=(state, version))

    def assign(self, who: Principal, task_id: str, assignee: str, role: str | None = None) -> InstanceState:
        if not self.enforced:
            if not role:
                raise InputError("say which role you act in", hint="add --role ROLE")
            return self.engine.assign(task_id, assignee, actor=who.id, role=role)
        state, _, task = self._task(task_id)
        target = canonical_user_id(assignee)
        if target == who.id:  # claiming: the same right as completing it
            role = self._acting_role(who, "claim", state, task, role)
            return self.engine.assign(task_id, target, actor=who.id, role=role)
        self._known(who, "assign", state, task=task)
        supervisor = sorted(who.roles & self.supervisor_roles)
        if role and role not in who.roles:
            self._refuse(who, "assign", state, f"{who.id} does not hold role '{role}'",
                         "act in a role you hold", task=task, role=role)
        if not supervisor:
            self._refuse(who, "assign", state, f"{who.id} may not assign tasks to others (not a supervisor)",
                         "supervisor roles: " + ", ".join(sorted(self.supervisor_roles)), task=task, role=role)
        other = self.directory.find_user(target)
        accepted = {task.role, *task.escalation_roles}
        if other is None or not other.active or not (accepted & set(other.roles)):
            self._refuse(who, "assign", state,
                         f"'{assignee}' cannot own task {task.id}: "
                         + ("not in the directory" if other is None else "disabled" if not other.active
                            else f"does not hold role '{task.role}'"),
                         f"assign to an active user holding '{task.role}'", task=task, role=role)
        # the engine checks the acting role against the task; a supervisor acts for the task's role
        return self.engine.assign(task_id, target, actor=who.id, role=task.role)

    def message(self, who: Principal, case_id: str, name: str,
                payload: Mapping[str, Any] | None = None) -> InstanceState:
        if self.enforced:
            state, _ = self.engine.store.load_case(case_id)
            self._known(who, "message", state)
            lanes = self.engine.graph_for(state).definition.lane_ids()
            if not (who.roles & (lanes | self.supervisor_roles)):
                self._refuse(who, "message", state, f"{who.id} holds no role of process '{state.process_id}'",
                             "a lane of the process or a supervisor role is needed")
        return self.engine.send_message(case_id, name, payload, actor=who.id or None)

    def update(self, who: Principal, case_id: str, data: Mapping[str, Any]) -> InstanceState:
        if self.enforced:
            state, _ = self.engine.store.load_case(case_id)
            self._known(who, "update", state)
            open_tasks = state.open_tasks()
            holds_task = any(who.roles & {t.role, *t.escalation_roles} or t.assignee == who.id for t in open_tasks)
            if not holds_task and not (who.roles & self.supervisor_roles):
                waiting = ", ".join(sorted({t.role for t in open_tasks})) or "no open task"
                self._refuse(who, "update", state,
                             f"{who.id} may not change case {case_id}: it waits for {waiting}",
                             "a role holding an open task on the case or a supervisor role is needed")
        return self.engine.update(case_id, data, actor=who.id or None)

    def cancel(self, who: Principal, case_id: str, reason: str) -> InstanceState:
        if self.enforced:
            state, _ = self.engine.store.load_case(case_id)
            self._known(who, "cancel", state)
            if not (who.roles & self.supervisor_roles):
                self._refuse(who, "cancel", state, f"{who.id} may not cancel cases (not a supervisor)",
                             "supervisor roles: " + ", ".join(sorted(self.supervisor_roles)))
        return self.engine.cancel(case_id, reason, actor=who.id or None)

    # -- checks --------------------------------------------------------------------------------
    def may_act_on(self, who: Principal, task: Task) -> bool:
        """Whether the inbox should offer this task to this principal."""
        return bool(who.roles & {task.role, *task.escalation_roles}) or task.assignee == who.id

    def _task(self, task_id: str) -> tuple[InstanceState, int, Task]:
        state, version, _ = self.engine.store.load_case_of_task(task_id)
        task = state.tasks.get(task_id)
        if task is None:
            raise NotFound(f"no task with id '{task_id}'", hint="list open tasks with `svcflow tasks`")
        return state, version, task

    def _acting_role(self, who: Principal, action: str, state: InstanceState, task: Task, role: str | None) -> str:
        """The role the principal acts in: the one named (it must be theirs), else the first they hold
        that the task accepts."""
        self._known(who, action, state, task=task, role=role)
        if role:
            if role not in who.roles:
                self._refuse(who, action, state, say("role_not_held", actor=who.id, role=role),
                             f"they hold: {', '.join(sorted(who.roles)) or 'no roles'}", task=task, role=role)
            return role
        accepted = [task.role, *task.escalation_roles]
        for candidate in accepted:
            if candidate in who.roles:
                return candidate
        if task.assignee == who.id and who.roles:
            return sorted(who.roles)[0]
        self._refuse(who, action, state, say("no_accepted_role", actor=who.id, task=task.id),
                     f"the task belongs to {', '.join(accepted)}", task=task, role=role)
        raise AssertionError  # pragma: no cover - _refuse raises

    def _known(self, who: Principal, action: str, state: InstanceState | None, *, task: Task | None = None,
               role: str | None = None, process: str | None = None) -> None:
        if who.known:
            return
        if not who.id:
            reason = say("no_user")
        else:
            reason = say("disabled_user" if who.kind == "disabled" else "not_a_user", who=repr(Limits.clip(who.id, 80)))
        self._refuse(who, action, state, reason, "act as an active directory user (`svcflow users list`)",
                     task=task, role=role, process=process)

    def _refuse(self, who: Principal, action: str, state: InstanceState | None, reason: str, hint: str, *,
                task: Task | None = None, role: str | None = None, process: str | None = None) -> None:
        refusal = AccessDenied(reason, hint=hint)
        if state is not None:  # the engine's record: the log's `refused` contract, clipped values, "what was stored"
            self.engine.record_refusal(refusal, _EVENT_OF_ACTION[action], state=state, node=task.node if task else None,
                                       task_id=task.id if task else None, actor=who.id, role=role,
                                       action=action, actor_kind=who.kind)
        else:
            details: dict[str, Any] = {"reason": reason, "action": action, "actor": who.id,
                                       "actor_kind": who.kind, "role": role, "process": process}
            if task is not None:
                details["task_id"] = task.id
            self.directory.audit("refused", who.id, details, self.engine.clock.now())
            refusal.hint = f"{hint}; no case was changed; the refusal is kept in the directory's audit trail " \
                           "(`svcflow users audit`)"
        raise refusal


_EVENT_OF_ACTION = {"start": "StartCase", "complete": "CompleteTask", "claim": "AssignTask", "assign": "AssignTask",
                    "message": "MessageArrived", "update": "UpdateData", "cancel": "CancelCase"}
"""The engine event each gated action would have been: a gate refusal reads like the engine's own."""


def refusal_status(exc: Exception) -> int:
    """HTTP status of one of our errors: 403 refused, 404 missing, 409 not possible now, 422 bad input."""
    if isinstance(exc, AccessDenied):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, TaskRefused):
        return 409
    return 422


__all__ = ["Gate", "Principal", "library_roles", "open_gate", "refusal_status"]
