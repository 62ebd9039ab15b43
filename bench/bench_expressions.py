"""How long a typical gateway condition takes: svcflow's compiled expression against plain celpy.

Run: .venv/bin/python bench/bench_expressions.py [--rounds 20000] [--repeat 5]

Not a unit test (it replaces the old timed `test_typical_condition_evaluates_fast`). A what-if
simulation evaluates ~100,000 conditions, so each must cost microseconds. The peer is celpy used
the ordinary way (`Environment().compile()` once, `program().evaluate(activation)` per call),
measured interleaved in the same run so a busy machine slows both alike; the figure is the
ratio. Target: svcflow at least 5x faster than plain celpy on this condition.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import celpy

from engine.expressions.cel import compile_expression

CONDITION = 'data.tier in ["platinum", "gold"] && data.compensation_claim > 5000'
DATA = {"tier": "gold", "compensation_claim": 6000}


def ours() -> Callable[[], bool]:
    expression = compile_expression(CONDITION)
    scope = {"data": DATA}
    return lambda: expression.evaluate_bool(scope)


def plain_celpy() -> Callable[[], bool]:
    environment = celpy.Environment()
    program = environment.program(environment.compile(CONDITION))
    activation = {"data": celpy.json_to_cel(DATA)}
    return lambda: bool(program.evaluate(activation))


def per_call(function: Callable[[], bool], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        if not function():
            raise AssertionError("the condition must hold for the benchmark data")
    return (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "expressions.json"),
                        help="JSON result file, or - for none")
    args = parser.parse_args()
    peers = {"svcflow": ours(), "celpy": plain_celpy()}
    for function in peers.values():
        per_call(function, min(args.rounds, 1000))  # warm-up
    times: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(args.repeat):
        for name, function in peers.items():
            times[name].append(per_call(function, args.rounds))
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["celpy"] / medians["svcflow"]
    for name, value in medians.items():
        print(f"{name:8s} {value * 1e6:8.2f} µs per evaluation")
    print(f"svcflow is {ratio:.1f}x faster than plain celpy (target >= 5x)")
    if args.output != "-":
        Path(args.output).write_text(json.dumps({
            "benchmark": "typical gateway condition: svcflow compiled expression vs plain celpy",
            "condition": CONDITION, "rounds": args.rounds, "repeat": args.repeat,
            "median_seconds_per_evaluation": medians, "ratio_celpy_over_svcflow": ratio,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
