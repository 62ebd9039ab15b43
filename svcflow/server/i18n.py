"""The inbox's own words in Chinese and English (labels from definitions carry their own)."""

from __future__ import annotations

from engine.messages import WORDS as SHARED_WORDS
from engine.messages import in_chinese

LANGS = ("zh", "en")
WORDS: dict[str, tuple[str, str]] = {
    "title": ("svcflow 任务箱", "svcflow inbox"),
    "login": ("登录", "Log in"),
    "logout": ("退出", "Log out"),
    "user": ("用户名", "User"),
    "password": ("密码", "Password"),
    "bad_login": ("用户名或密码错误,或账号已停用", "Wrong user or password, or the account is disabled"),
    "my_tasks": ("我的任务", "My tasks"),
    "role_tasks": ("我的角色的任务", "My roles' tasks"),
    "no_tasks": ("没有待办任务", "No open tasks"),
    "task": ("任务", "Task"),
    "case": ("案件", "Case"),
    "process": ("流程", "Process"),
    "step": ("步骤", "Step"),
    "role": ("角色", "Role"),
    "assignee": ("负责人", "Assignee"),
    "due": ("到期", "Due"),
    "sla": ("时限已用", "SLA used"),
    "priority": ("优先级", "Priority"),
    "level": ("升级级别", "Escalation level"),
    "open": ("打开", "Open"),
    "claim": ("认领", "Claim"),
    "complete": ("完成", "Complete"),
    "required": SHARED_WORDS["required"],
    "new_case": ("登记新案件", "New case"),
    "start": ("登记", "Register"),
    "cases": ("案件查询", "Cases"),
    "search": ("查询", "Search"),
    "search_hint": ("案件号、客户名称或编号", "case id, customer name or id"),
    "status": ("状态", "Status"),
    "data": ("案件数据", "Case data"),
    "open_tasks": ("待办任务", "Open tasks"),
    "departments": ("各部门进度", "Progress by department"),
    "department": ("部门", "Department"),
    "who": ("经办人", "Who"),
    "when": ("完成时间 / 到期", "Done at / due"),
    "state_open": ("处理中", "open"),
    "state_completed": ("已完成", "done"),
    "state_cancelled": ("已取消", "cancelled"),
    "clocks": ("SLA 时限", "SLA clocks"),
    "history": ("处理记录", "History"),
    "subcases": ("子案件", "Sub-cases"),
    "flowchart": ("流程图(已走路径)", "Flowchart (path taken)"),
    "done": ("已完成任务", "Completed task"),
    "moved_on": ("案件已进入", "The case moved on to"),
    "error": ("出错了", "Something is wrong"),
    "back": ("返回任务箱", "Back to the inbox"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "started": ("开始", "Started"),
    "event": ("事件", "Event"),
    "all": ("全部", "all"),
    "nothing_found": ("没有找到案件", "No cases found"),
    "you": ("当前用户", "Signed in as"),
}


def words(lang: str) -> dict[str, str]:
    index = 0 if lang == "zh" else 1
    return {key: pair[index] for key, pair in WORDS.items()}


def refusal(message: str, lang: str) -> str | None:
    """A refusal's reason in the reader's language when that is Chinese (engine/messages.py, the same
    catalogue the Prefect forms use); None when the stored English is what to show."""
    return in_chinese(message) if lang == "zh" else None
