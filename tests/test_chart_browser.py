"""The 8 library charts as a browser shows them: headless Chromium (playwright) opens each SVG.

An SVG that Graphviz wrote can still show nothing (a font missing, a broken transform, text
drawn white on white), so each chart is looked at: every step is drawn with a size, and the
screenshot has ink on it in the chart's colours. Screenshots are kept as test artefacts in
out/screenshots/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.definition.library import ProcessLibrary
from visualize.flowchart import flowchart_dot, render

from tests.browser_harness import ARGS, SHOTS, chromium_path

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ["after_sales_repair", "big_client_return_visit", "big_client_visit", "complaint_handling",
             "credit_rating", "credit_rating_change", "customer_retention", "major_complaint"]

# Counted in the page from the screenshot (a data: URL never taints the canvas): how much of the
# picture is not white, and how many distinct colours it has.
INK_SCRIPT = """async (png) => {
  const image = new Image();
  image.src = "data:image/png;base64," + png;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width; canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, image.width, image.height).data;
  let ink = 0; const seen = new Set();
  for (let i = 0; i < data.length; i += 16) {
    if (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235) ink++;
    seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  return {width: image.width, height: image.height, ink: ink / (data.length / 16), colours: seen.size};
}"""


@pytest.fixture(scope="module")
def charts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The 8 charts as SVG files, as `svcflow render` writes them."""
    folder = tmp_path_factory.mktemp("charts")
    library = ProcessLibrary.from_dir()
    written: dict[str, Path] = {}
    for process_id in PROCESSES:
        path = folder / f"{process_id}.svg"
        path.write_bytes(render(flowchart_dot(library.get(process_id)), "svg"))
        written[process_id] = path
    return written


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        try:
            page = context.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            context.close()
            browser.close()


def test_the_library_is_the_eight_charts_looked_at() -> None:
    assert sorted(ProcessLibrary.from_dir().process_ids()) == PROCESSES


@pytest.mark.parametrize("process_id", PROCESSES)
def test_each_library_chart_renders_in_chromium_with_every_step_drawn(
        page: Any, charts: dict[str, Path], process_id: str) -> None:
    svg = charts[process_id].read_text(encoding="utf-8")
    page.set_content('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0">'
                     + svg[svg.index("<svg"):] + "</body></html>")
    drawn = page.evaluate("""() => {
      const svg = document.querySelector("svg").getBoundingClientRect();
      const steps = [...document.querySelectorAll("g.node[id^='node-']")].map(g => {
        const box = g.getBoundingClientRect(); return [g.id, box.width, box.height];
      });
      return {width: svg.width, height: svg.height, steps: steps,
              text: [...document.querySelectorAll("text")].map(t => t.textContent).join(" ")};
    }""")
    shot = SHOTS / f"chart-{process_id}.png"
    png = page.screenshot(path=str(shot), full_page=True)
    definition = ProcessLibrary.from_dir().get(process_id).definition
    assert drawn["width"] >= 600 and drawn["height"] >= 300
    assert sorted(step_id for step_id, _, _ in drawn["steps"]) == sorted(f"node-{n.id}" for n in definition.nodes)
    assert all(width > 5 and height > 5 for _, width, height in drawn["steps"])
    assert definition.name.zh in drawn["text"]
    ink = page.evaluate(INK_SCRIPT, base64.b64encode(png).decode("ascii"))
    assert ink["width"] >= 1920 * 0.9 and ink["height"] >= 300
    assert ink["ink"] > 0.02, f"{process_id}: the screenshot is almost blank ({ink['ink']:.1%} ink)"
    assert ink["colours"] > 20
