"""The review, the weekly report and the what-if comparison as a browser shows them (headless Chromium, playwright).

A page that is well-formed HTML can still render blank (an SVG that fails to parse, CSS that hides
everything), so what the browser drew is checked: the heatmap's status fills among the screenshot's
colours, the charts and tables present and visible. Screenshots are kept in out/screenshots/
(git-ignored) for a person to look at.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analytics.weekly import build_weekly
from simulation.report import write_comparison, write_simulation
from simulation.scenario import load_scenario
from simulation.simulator import SimulationResult, simulate
from visualize.review import STATUS_FILL
from visualize.weekly import write_weekly

from tests.browser_harness import ARGS, SHOTS, chromium_path

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runs() -> tuple[SimulationResult, SimulationResult]:
    as_is, to_be = (load_scenario(ROOT / "scenarios" / name) for name in ("complaint_as_is.yaml",
                                                                          "complaint_to_be.yaml"))
    return simulate(as_is, cases=40, seed=5), simulate(to_be, cases=40, seed=5)


@pytest.fixture(scope="module")
def pages(runs: tuple[SimulationResult, SimulationResult], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reports")
    review, _png = write_simulation(runs[0], out / "review.html")
    comparison, _a, _b = write_comparison(runs[0], runs[1], out / "comparison.html")
    events = [e for e in runs[0].events if e.process_id in ("complaint_handling", "major_complaint")]
    _md, weekly = write_weekly(build_weekly(events, "2025-W02", "Asia/Shanghai"), out)
    return {"review": review, "comparison": comparison, "weekly": weekly}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


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


def colours(png: bytes) -> set[tuple[int, int, int]]:
    _w, _h, rows, bpp = decode_png(png)
    return {(row[x], row[x + 1], row[x + 2]) for row in rows for x in range(0, len(row), bpp)}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def test_the_review_draws_its_heatmap_and_charts(page: Any, pages: dict[str, Path]) -> None:
    page.goto(pages["review"].as_uri())
    heatmap = page.locator(".heatmap svg")
    assert heatmap.is_visible()
    seen = colours(page.screenshot(path=str(SHOTS / "review-heatmap.png"), clip=heatmap.bounding_box()))
    assert len(seen) > 50 and {rgb(STATUS_FILL[s]) for s in ("green", "amber", "red")} & seen
    for chart in ("#dotted-chart", "#performance-spectrum"):
        assert page.locator(chart).is_visible(), chart
        assert page.locator(f"{chart} circle, {chart} line").count() > 20, chart
    page.locator("#dotted-chart").screenshot(path=str(SHOTS / "review-dotted-chart.png"))
    page.locator("#performance-spectrum").screenshot(path=str(SHOTS / "review-performance-spectrum.png"))
    for table in ("steps-table", "variants-table", "clocks-table", "arcs-table", "by-tier-table", "trends-table"):
        assert page.locator(f"#{table} tbody tr").count() > 0, table
    assert "收到投诉 →" in page.locator("#variants-table").inner_text()  # variants by step name
    page.screenshot(path=str(SHOTS / "review.png"))


def test_the_weekly_report_shows_its_summary_trend_and_names(page: Any, pages: dict[str, Path]) -> None:
    page.goto(pages["weekly"].as_uri())
    assert page.locator("#analysis-zh").inner_text().startswith("本周新增投诉")
    assert page.locator("#trend-table tbody tr").count() == 5
    categories = page.locator("#by_category-table").inner_text()
    assert "(billing)" in categories and "计费收费 Billing" in categories
    page.screenshot(path=str(SHOTS / "weekly.png"), full_page=True)


def test_the_comparison_explains_why_the_figures_moved(page: Any, pages: dict[str, Path]) -> None:
    page.goto(pages["comparison"].as_uri())
    table = page.locator("#attribution-table")
    assert table.is_visible()
    text = table.inner_text()
    assert "the measuring point moved" in text and "load changed" in text and "the path changed" in text
    assert "resolve_at_desk" in text
    table.screenshot(path=str(SHOTS / "comparison-attribution.png"))
    page.screenshot(path=str(SHOTS / "comparison.png"))
