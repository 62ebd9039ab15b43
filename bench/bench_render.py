"""How long a flowchart takes: a generated 200-node definition against a 5-node one, to SVG.

Run: .venv/bin/python bench/bench_render.py [--nodes 200] [--repeat 5]

Not a unit test. Target: the 200-node chart in under 1 s. The tiny chart in the same run gives
the fixed cost (starting `dot`, loading fonts), so the ratio shows what the size itself costs.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.definition.graph import ProcessGraph
from engine.definition.library import ProcessLibrary
from visualize.flowchart import flowchart_dot, render

LANES = ("front_desk", "handler", "supervisor", "specialist", "quality")
LANE_NAMES = {"front_desk": ("前台", "Front desk"), "handler": ("处理人", "Handler"),
              "supervisor": ("主管", "Supervisor"), "specialist": ("专家", "Specialist"),
              "quality": ("质检", "Quality")}
BLOCK = 7  # two tasks, a rework gateway, a parallel split, two parallel tasks, the join


def _header(process_id: str, zh: str, en: str, flags: list[str]) -> list[str]:
    """The definition's head; `flags`: the boolean fields the rework gateways' conditions read."""
    lines = [f"id: {process_id}", "version: 1", f'name: {{zh: "{zh}", en: "{en}"}}',
             "data:", "  tier: {type: enum, choices: [gold, standard]}",
             *(f"  {flag}: {{type: boolean}}" for flag in flags), "lanes:"]
    lines += [f'  - {{id: {lane}, name: {{zh: "{LANE_NAMES[lane][0]}", en: "{LANE_NAMES[lane][1]}"}}}}'
              for lane in LANES]
    lines += [
        "ladders:",
        "  step_ladder:",
        "    - {at: 50, notify: [handler]}",
        "    - {at: 100, notify: [supervisor], raise_priority: high}",
        "    - {at: 150, notify: [quality], reassign: supervisor}",
    ]
    return lines


def _task(node_id: str, n: int, lane: str) -> str:
    return (f'  - {{id: {node_id}, kind: human, lane: {lane}, name: {{zh: "步骤{n}", en: "Step {n}"}}, '
            f'sla: {{policies: [{{when: \'data.tier == "gold"\', target: 2h}}, {{target: 8h}}], '
            f'escalation: step_ladder}}}}')


def big_definition(nodes: int = 200) -> str:
    """A chain of blocks (tasks, a rework loop, a parallel pair), padded with tasks to `nodes` nodes."""
    blocks = (nodes - 2) // BLOCK
    pad = nodes - 2 - blocks * BLOCK
    node_lines = ['  - {id: begin, kind: start, name: {zh: "开始", en: "Begin"}}']
    edge_lines: list[str] = []
    previous = "begin"
    n = 0
    for b in range(blocks):
        lane = LANES[b % len(LANES)]
        other = LANES[(b + 1) % len(LANES)]
        t1, t2, xor, split, p1, p2, join = (f"b{b}_{s}" for s in ("t1", "t2", "check", "split", "p1", "p2", "join"))
        n += 1
        node_lines.append(_task(t1, n, lane))
        n += 1
        node_lines.append(_task(t2, n, lane))
        node_lines.append(f'  - {{id: {xor}, kind: exclusive, name: {{zh: "返工{b}?", en: "Rework {b}?"}}}}')
        node_lines.append(f"  - {{id: {split}, kind: parallel}}")
        n += 1
        node_lines.append(_task(p1, n, other))
        n += 1
        node_lines.append(_task(p2, n, "specialist"))
        node_lines.append(f"  - {{id: {join}, kind: parallel}}")
        edge_lines += [
            f"  - {{from: {previous}, to: {t1}}}",
            f"  - {{from: {t1}, to: {t2}}}",
            f"  - {{from: {t2}, to: {xor}}}",
            f'  - {{from: {xor}, to: {t1}, when: data.rework_{b}, label: {{zh: "返工", en: "rework"}}}}',
            f"  - {{from: {xor}, to: {split}, default: true}}",
            f"  - {{from: {split}, to: {p1}}}",
            f"  - {{from: {split}, to: {p2}}}",
            f"  - {{from: {p1}, to: {join}}}",
            f"  - {{from: {p2}, to: {join}}}",
        ]
        previous = join
    for i in range(pad):
        n += 1
        node_id = f"tail_{i}"
        node_lines.append(_task(node_id, n, LANES[i % len(LANES)]))
        edge_lines.append(f"  - {{from: {previous}, to: {node_id}}}")
        previous = node_id
    node_lines.append('  - {id: finish, kind: end, outcome: done, name: {zh: "结束", en: "Finish"}}')
    edge_lines.append(f"  - {{from: {previous}, to: finish}}")
    return "\n".join([*_header("bench_big", "大流程", "Big process", [f"rework_{b}" for b in range(blocks)]), "nodes:", *node_lines, "edges:", *edge_lines]) + "\n"


def tiny_definition() -> str:
    """Five nodes: start, two tasks around a gateway, end."""
    return "\n".join([
        *_header("bench_tiny", "小流程", "Tiny process", ["rework"]),
        "nodes:",
        '  - {id: begin, kind: start, name: {zh: "开始", en: "Begin"}}',
        _task("first", 1, "front_desk"),
        '  - {id: check, kind: exclusive, name: {zh: "通过?", en: "Passed?"}}',
        _task("second", 2, "handler"),
        '  - {id: finish, kind: end, name: {zh: "结束", en: "Finish"}}',
        "edges:",
        "  - {from: begin, to: first}",
        "  - {from: first, to: check}",
        "  - {from: check, to: first, when: data.rework}",
        "  - {from: check, to: second, default: true}",
        "  - {from: second, to: finish}",
    ]) + "\n"


def graph_of(text: str) -> ProcessGraph:
    library = ProcessLibrary()
    return library.graph_of(library.add_text(text, "bench.yaml"))


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    big, tiny = graph_of(big_definition(args.nodes)), graph_of(tiny_definition())
    assert len(big.nodes) == args.nodes and len(tiny.nodes) == 5
    flowchart_dot(tiny)  # warm up: font lookup (cached per process) and imports

    rows = []
    for name, graph in (("tiny", tiny), ("big", big)):
        dot_times = timed(functools.partial(flowchart_dot, graph), args.repeat)
        dot_text = flowchart_dot(graph)
        svg_times = timed(functools.partial(render, dot_text, "svg"), args.repeat)
        total = [a + b for a, b in zip(dot_times, svg_times)]
        rows.append((name, len(graph.nodes), len(graph.definition.edges), statistics.median(dot_times),
                     statistics.median(svg_times), statistics.median(total), min(total)))

    print(f"{'chart':<6} {'nodes':>5} {'edges':>5} {'DOT text':>10} {'dot -Tsvg':>10} {'total':>8} {'best':>8}")
    for name, nodes, edges, dot_s, svg_s, total_s, best_s in rows:
        print(f"{name:<6} {nodes:>5} {edges:>5} {dot_s:>9.4f}s {svg_s:>9.3f}s {total_s:>7.3f}s {best_s:>7.3f}s")
    tiny_total, big_total = rows[0][5], rows[1][5]
    verdict = "OK" if big_total < 1.0 else "SLOWER THAN TARGET"
    print(f"median of {args.repeat}; big/tiny = {big_total / tiny_total:.1f}x; "
          f"target < 1 s for {args.nodes} nodes: {verdict}")


if __name__ == "__main__":
    main()
