"""Start-up of the `reco` command (issue: "reco --help and reco step in a pod start fast").

`python -m bench.startup [--repeats 7]`: each command in a fresh interpreter, as a pod or a shell starts it; the
median wall time from exec to exit. `reco step --help` stands for a step pod's start-up before its work (it
loads the same modules `reco step NAME` does and then stops); the big libraries it imports are listed from
`python -X importtime`, largest first. Printed as a table; also called by bench/run.py.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = [
    ["--help"],
    ["--version"],
    ["plan", "--help"],
    ["notify", "--help"],
    ["submit", "--help"],
    ["step", "--help"],
]
RECO = [sys.executable, "-c", "import sys; from batch.cli import main; sys.exit(main())"]


def time_command(args: list[str], repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([*RECO, *args], capture_output=True, check=False)
        walls.append(time.perf_counter() - t)
    return statistics.median(walls)


HEAVY = ("pandas", "pyarrow", "duckdb", "numpy", "scipy.sparse", "implicit", "sqlglot", "pydantic", "fsspec")


def heavy_imports(args: list[str]) -> list[tuple[str, float]]:
    """The cumulative import time of the big libraries a command loads, in seconds, largest first."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", RECO[2], *args], capture_output=True, text=True
    )
    found: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, cumulative, name = line.split("|")
            if name.strip() in HEAVY and cumulative.strip().isdigit():
                found[name.strip()] = int(cumulative) / 1e6
    return sorted(found.items(), key=lambda r: -r[1])


def table(repeats: int = 7) -> str:
    lines = ["| command | median wall s |", "|---|---|"]
    for args in COMMANDS:
        lines.append(f"| `reco {' '.join(args)}` | {time_command(args, repeats):.2f} |")
    lines.append("")
    lines.append(
        "`reco step`'s largest imports (cumulative s, nested ones counted in their parent too): "
        + ", ".join(f"{name} {s:.2f}" for name, s in heavy_imports(["step", "--help"]))
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    print(table(args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
