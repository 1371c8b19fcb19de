"""What strict request parsing costs: StrictJSONParser vs DRF's JSONParser on the same bodies, in the same run.

    python -m quantumquill.devstack exec --profile test -- .venv/bin/python bench/bench_strict_parsing.py

Parses a typical generation request (about 300 bytes) and a large one (a
4,000-character prompt and four stop sequences) many times with each parser,
alternating them every round so drift hits both alike; the result is the
median of the per-round time ratios strict/plain. Also shows that a 6 KB
body nested 3,000 deep is refused in about the time of a plain parse.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._django import machine, setup_django


def main() -> int:
    setup_django(migrate=False)
    from rest_framework.exceptions import ParseError
    from rest_framework.parsers import JSONParser

    from apps.security.parsers import StrictJSONParser

    small = json.dumps(
        {
            "prompt": "A limerick about range-based sharding",
            "max_tokens": 60,
            "temperature": 0.7,
            "top_p": 0.9,
            "seed": 7,
            "stop": ["\n\n"],
        }
    ).encode()
    large = json.dumps({"prompt": "quill and ink, " * 266, "stop": ["[end]", "{stop}", '"q"', "###"]}).encode()
    deep = b'{"username":' + b"[" * 3000 + b"]" * 3000 + b"}"
    strict, plain = StrictJSONParser(), JSONParser()

    def timed(parser: Callable[..., object], body: bytes, repeat: int) -> float:
        started = time.perf_counter()
        for _ in range(repeat):
            parser(io.BytesIO(body), "application/json", {})
        return (time.perf_counter() - started) / repeat

    print(f"Machine: {machine()}; 2 cores shared with other work (ratios within this run are what counts).")
    for name, body, repeat in (
        (f"typical ({len(small)} B)", small, 4000),
        (f"large ({len(large)} B)", large, 1000),
    ):
        ratios, strict_times, plain_times = [], [], []
        for round_ in range(9):
            order = [(strict.parse, strict_times), (plain.parse, plain_times)]
            for parse, times in order if round_ % 2 == 0 else reversed(order):
                times.append(timed(parse, body, repeat))
            ratios.append(strict_times[-1] / plain_times[-1])
        print(
            f"{name}: strict {statistics.median(strict_times) * 1e6:.1f} us, plain {statistics.median(plain_times) * 1e6:.1f} us,"
            f" ratio strict/plain {statistics.median(ratios):.2f}"
        )
    started = time.perf_counter()
    for _ in range(200):
        try:
            strict.parse(io.BytesIO(deep), "application/json", {})
        except ParseError:
            pass
    print(f"3,000-deep body ({len(deep)} B) refused with 400 in {(time.perf_counter() - started) / 200 * 1e6:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
