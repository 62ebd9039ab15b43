"""The inbox's own words in Chinese and English (labels from definitions carry their own)."""

from __future__ import annotations

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
    "required": ("必填", "required"),
    "new_case": ("登记新案件", "New case"),
    "start": ("登记", "Register"),
    "cases": ("案件查询", "Cases"),
    "search": ("查询", "Search"),
    "search_hint": ("案件号、客户名称或编号", "case id, customer name or id"),
    "status": ("状态", "Status"),
    "data": ("案件数据", "Case data"),
    "open_tasks": ("各部门进度(待办)", "Progress by department (open tasks)"),
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
