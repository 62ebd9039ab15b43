"""The review report as a browser shows it: headless Chromium renders the page offline.

A page that is well-formed HTML can still render blank (an SVG that fails to parse, CSS that
hides everything), so the screenshot itself is checked: many distinct colours, and the heatmap's
status fills among them. `--dump-dom` shows what the browser built from the page.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from visualize.review import STATUS_FILL
from simulation.report import write_simulation
from simulation.scenario import load_scenario
from simulation.simulator import simulate

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    """Chromium's path; required when CI=true (fail, never skip silently)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but headless Chromium is not installed (apt-get install chromium)")
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = simulate(load_scenario(ROOT / "scenarios" / "complaint_as_is.yaml"), cases=60, seed=5)
    html_path, _png = write_simulation(result, tmp_path_factory.mktemp("report") / "report.html")
    return html_path


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=180, check=False)


def decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Width, height, unfiltered rows and bytes per pixel of an 8-bit RGB/RGBA PNG (no Pillow needed)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth}/{colour}"
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prev = bytearray(stride)
    rows: list[bytes] = []
    i = 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        if kind == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 255
        elif kind == 2:
            for x in range(stride):
                line[x] = (line[x] + prev[x]) & 255
        elif kind == 3:
            for x in range(stride):
                line[x] = (line[x] + ((line[x - bpp] if x >= bpp else 0) + prev[x]) // 2) & 255
        elif kind == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def colours(rows: list[bytes], bpp: int) -> set[tuple[int, int, int]]:
    found: set[tuple[int, int, int]] = set()
    for row in rows:
        for x in range(0, len(row), bpp):
            found.add((row[x], row[x + 1], row[x + 2]))
    return found


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def test_report_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    done = run_chromium([f"--screenshot={shot}", "--window-size=1400,2000", report.as_uri()], tmp_path / "profile")
    assert shot.exists(), done.stderr[-2000:]
    width, height, rows, bpp = decode_png(shot.read_bytes())
    assert (width, height) == (1400, 2000)
    seen = colours(rows, bpp)
    assert len(seen) > 200  # text, tables, the heatmap: a blank page has a handful
    assert {rgb(STATUS_FILL[s]) for s in ("green", "amber", "red")} & seen  # the heatmap's fills are drawn


def test_report_dom_has_the_heatmap_and_the_tables(report: Path, tmp_path: Path) -> None:
    done = run_chromium(["--dump-dom", report.as_uri()], tmp_path / "profile")
    dom = done.stdout
    assert "<svg" in dom, done.stderr[-2000:]
    assert 'id="node-register"' in dom  # graphviz's node ids survive into the browser's DOM
    for ident in ("heatmap", "steps-table", "variants-table", "rework-table", "workload-table", "clocks-table",
                  "escalations-table", "slowest-table", "utilisation-table"):
        assert f'id="{ident}"' in dom, ident
