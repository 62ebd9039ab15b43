"""Smoke test of bench/bench_sweep.py: its PostgreSQL fill gives the rows the per-row copy gives, and a run
over several open and due counts sweeps every due case of each pass. No timing assertions."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bench import bench_sweep
from engine.store.sql import Store


@pytest.fixture(scope="module")
def templates() -> tuple[list[bench_sweep.Template], list[bench_sweep.Template]]:
    return bench_sweep.templates()


@pytest.mark.postgres
def test_the_server_side_fill_gives_the_rows_of_the_per_row_copy(postgres_url: str, templates: tuple[
        list[bench_sweep.Template], list[bench_sweep.Template]]) -> None:
    due, still = templates
    schemas = [f"svcflow_test_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    server, python = (Store(bench_sweep.schema_url(postgres_url, schema)) for schema in schemas)
    try:
        bench_sweep.fill(server, due, still, 31, 17, open_from=4)
        for table in bench_sweep.TABLES:
            columns = bench_sweep._columns(due + still, table)
            for template_list, count, prefix, start in ((still, 31, "OPEN", 4), (due, 17, "DUE", 0)):
                python.bulk_load(table, columns, bench_sweep._copies(template_list, table, columns, count, prefix, start))
        raw = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
        with raw.connect() as conn:
            for table, key in (("cases", "id"), ("tasks", "id"), ("sla_clocks", "case_id, clock_id")):
                rows = [conn.execute(text(f'SELECT * FROM "{schema}".{table} ORDER BY {key}')).all() for schema in schemas]
                assert rows[0] == rows[1] and len(rows[0]) >= 48
        with raw.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        raw.dispose()
    finally:
        server.dispose()
        python.dispose()


def test_a_run_sweeps_every_due_case_at_each_open_and_due_count(tmp_path: Path) -> None:
    output = tmp_path / "sweep.json"
    code = bench_sweep.main(["--database", f"sqlite:///{tmp_path / 'bench.db'}", "--open", "20,50", "--due", "5,15",
                             "--output", str(output)])
    figures = json.loads(output.read_text(encoding="utf-8"))
    assert code == 0
    assert [(p["open"], p["due"], p["cases_swept"], p["still_due"]) for p in figures["passes"]] == [
        (20, 5, 5, 0), (20, 15, 15, 0), (50, 5, 5, 0), (50, 15, 15, 0)]
