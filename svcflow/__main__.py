"""`python -m svcflow ...`: the same CLI, for subprocesses that must use this interpreter."""

from svcflow.cli import app

app()
