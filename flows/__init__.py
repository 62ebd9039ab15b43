"""Cases as Prefect flow runs: automatic steps as tasks, human steps as paused runs with a form,
the escalation sweep as a served deployment, and a Markdown artifact per case for operators.

Modules: case_flow (run_case, start_case, continue_case, complete_in_case_run), human (forms,
resume_run_for_task), sweep (escalation_sweep), waiting (one live waiting run per waiting case),
notify (notifiers, SLA events), artifacts (case view), runtime (which engine, steps as tasks). Importing `flows` alone does not import Prefect.
"""
