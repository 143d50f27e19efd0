"""Run the benchmarks: ``python -m bench`` runs all, ``python -m bench NAME...`` some."""

import importlib
import pkgutil
import sys

import bench

NOT_BENCHMARKS = {"common", "__main__"}


def main(names: list[str]) -> None:
    available = sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                       if m.name not in NOT_BENCHMARKS)
    for name in names or available:
        if name not in available:
            sys.exit(f"no benchmark {name!r}; choose from {', '.join(available)}")
        print(f"== bench.{name}", flush=True)
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
