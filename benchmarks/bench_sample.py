"""How long the embedded sample takes to build (it runs before every `deepmlf demo` and sample test).

Prints figures; asserts nothing (tests/test_sample.py checks what it builds).

    .venv/bin/python benchmarks/bench_sample.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

from models.data.sample import make_sample_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times = []
    for seed in range(args.repeats):
        start = time.perf_counter()
        dataset = make_sample_dataset(seed=seed)
        times.append(time.perf_counter() - start)
    clips = sum(len(split) for split in dataset.splits.values())
    print(
        f"make_sample_dataset: {clips} clips, best {min(times) * 1e3:.0f} ms, "
        f"median {sorted(times)[len(times) // 2] * 1e3:.0f} ms over {args.repeats} builds"
    )


if __name__ == "__main__":
    main()
