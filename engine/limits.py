"""Size and cost limits on what designers write: definitions (YAML) and CEL expressions.

A definition is input like any other: a file can be huge, nested thousands deep, or an alias
bomb that expands to billions of nodes; an expression can nest past Python's recursion limit or
iterate ten million times. Each limit turns such input into one of our located errors in
bounded time. The defaults are far above anything the library needs (its largest file is
~40 KB, its deepest nesting 8, its longest expression ~120 characters); override them with
the `SVCFLOW_*` environment variables named below, read once per process.
"""

from __future__ import annotations

import functools

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DefinitionLimits(BaseSettings):
    """Limits on a definition file, checked while it is read."""

    model_config = SettingsConfigDict(env_prefix="SVCFLOW_", extra="ignore")

    max_definition_bytes: int = Field(default=1_000_000, ge=1, description="size of one definition file")
    max_yaml_depth: int = Field(default=32, ge=2, description="nesting of mappings and lists")
    max_yaml_nodes: int = Field(default=200_000, ge=1, description="values in the file, aliases expanded")


class ExpressionLimits(BaseSettings):
    """Limits on one CEL expression: size and nesting when compiled, work when evaluated."""

    model_config = SettingsConfigDict(env_prefix="SVCFLOW_CEL_", extra="ignore")

    max_length: int = Field(default=1_000, ge=1, description="characters of one expression")
    max_depth: int = Field(default=32, ge=1, description="nesting of brackets and of operators")
    max_steps: int = Field(default=10_000, ge=1, description="macro iterations (map, filter, all...) "
                                                                "of one evaluation")


@functools.cache
def definition_limits() -> DefinitionLimits:
    return DefinitionLimits()


@functools.cache
def expression_limits() -> ExpressionLimits:
    return ExpressionLimits()
