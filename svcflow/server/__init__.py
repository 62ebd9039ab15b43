"""`svcflow server`: the HTTP API for systems and the task inbox for staff, in front of `Engine`."""
