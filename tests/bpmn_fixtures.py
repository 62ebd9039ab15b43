"""The hand-made modeler files of tests/fixtures/bpmn, by name."""

from pathlib import Path

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "bpmn"
FIXTURES = {path.stem: path for path in sorted(FIXTURE_DIR.glob("*.bpmn"))}
