"""Run every benchmark and write docs/benchmarks.md: each figure, the command that produced it, the machine.

Each benchmark runs as its own subprocess (so they do not share warm caches or threads) one after another;
its printed output goes into the document verbatim, its headline lines into the summary table. With a CUDA
device present it also times the epoch-speed ratio on the GPU and a full 15-round LeNet-300-100 IMP run
(configs/lenet300_fashion_results.yaml) there.

    python benchmarks/run_all.py [--quick]     # about 35 min on the 2-core development CPU
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lottery.files import atomic_write_text  # noqa: E402


LOTTERY = ["-c", "from lottery.cli import main; main()"]  # the `lottery` command, run by this Python


@dataclass
class Bench:
    title: str
    args: list[str]
    headline: str  # regex: output lines that go into the summary
    goal: str
    gpu: bool = False
    stderr: str = ""  # regex: stderr lines kept with the output (the callback logs its rounds there)
    stdout: str = ""  # regex: when set, only these stdout lines are kept (drops Lightning's progress bar)


def benches(quick: bool, cuda: bool) -> list[Bench]:
    """The suite; `quick` shortens the repeats (for checking the script, not for figures)."""
    short = ["--repeats", "1"] if quick else []
    suite = [
        Bench("Masking overhead", ["benchmarks/masking_overhead.py", *(["--epochs", "2"] if quick else [])], r"ratio",
              "masked training <= 1.03x dense training"),
        Bench("Epoch speed against a plain PyTorch loop", ["benchmarks/epoch_speed.py", *short,
              *([] if quick else ["--full"])], r"ratio|full", "<= 1.25x a plain loop doing the same work",
              stdout=r"^(torch |lottery,|  same,|full )"),
        Bench("Pruner speed", ["benchmarks/pruner_speed.py"], r" = ",
              "100 SynFlow steps little more than 100 float64 fwd+bwd"),
        Bench("Ticket speed: sparse kernels against masked dense (LeNet-300-100, 15 IMP densities)",
              ["benchmarks/ticket_speed.py", *(["--pairs", "3"] if quick else [])], r"^\s+1[45] |^\s+30 |Linear 784|conv crossover",
              "a <=5% ticket trains >= 2x faster per step; csr inference >= 2x at batch 1 and 60"),
        Bench("Sparse rounds end to end: the 15-round results config, masked dense / sparse_below=auto",
              ["benchmarks/sparse_rounds.py", *(["--quick", "--seeds", "0", "--out", "runs/sparse_rounds_quick"]
                                                if quick else [])], r"^\s+1[1-5] |^seed ",
              "15 rounds >= 1.2x faster end to end, accuracies within the seeds' spread"),
        Bench("Comparison throughput", ["benchmarks/compare_throughput.py", "--workers", str(os.cpu_count() or 1)],
              r"cells/hour|speed-up", "speed-up near the number of workers"),
    ]
    if cuda:
        suite += [
            Bench("Epoch speed on the GPU", ["benchmarks/epoch_speed.py", "--device", "cuda", *short], r"ratio",
                  "<= 1.25x a plain loop on the same GPU", gpu=True),
            Bench("Full LeNet-300-100 IMP run, 15 rounds, on the GPU",
                  [*LOTTERY, "fit", "--config", "configs/lenet300_fashion_results.yaml",
                   "--trainer.accelerator", "gpu", "--trainer.enable_progress_bar", "false",
                   "--trainer.default_root_dir", "runs/benchmarks_gpu_imp"], r"round 15 done", "minutes", gpu=True,
                  stderr=r"LotteryTicket: round"),
        ]
    return suite


def machine() -> str:
    """One line naming the machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
        memory = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (f"{cpu}, {os.cpu_count()} cores{memory}{gpu}; Python {platform.python_version()}, torch "
            f"{torch.__version__}, pytorch-lightning {__import__('pytorch_lightning').__version__}")


def run(bench: Bench) -> tuple[str, float, int]:
    """Run one benchmark; its stdout (and the tail of stderr on failure), wall seconds and exit code."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *bench.args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    out = done.stdout
    if bench.stdout:
        out = "".join(line + "\n" for line in out.splitlines() if re.search(bench.stdout, line))
    if bench.stderr:
        out += "".join(line + "\n" for line in done.stderr.splitlines() if re.search(bench.stderr, line))
    if done.returncode:
        out += "\n[stderr, last lines]\n" + "\n".join(done.stderr.splitlines()[-15:])
    return out, time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats: checks the script, not for figures")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    summary, sections, failed = [], [], 0
    for bench in benches(args.quick, cuda):
        print(f"running {bench.title} ...", flush=True)
        out, wall, code = run(bench)
        failed += code != 0
        cli = bench.args[:2] == ["-c", LOTTERY[1]]
        command = "lottery " + " ".join(bench.args[2:]) if cli else "python " + " ".join(bench.args)
        heads = [line.strip() for line in out.splitlines() if re.search(bench.headline, line)]
        status = "" if code == 0 else f" **(failed, exit {code})**"
        summary.append(f"| {bench.title}{status} | {'<br>'.join(heads) or '–'} | {bench.goal} | `{command}` |")
        sections += [f"## {bench.title}", "", f"`{command}` ({wall / 60:.1f} min{status})", "", "```", out.rstrip(),
                     "```", ""]
    gpu_note = ([] if cuda else [
        "No GPU was present when this file was generated, so it has no GPU figures. On a machine with CUDA the same "
        "command adds the epoch-speed ratio on the GPU and the time of a full 15-round LeNet-300-100 IMP run.", ""])
    text = "\n".join([
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/run_all.py`" + (" --quick (shortened repeats)" if args.quick else "")
        + f" on {time.strftime('%Y-%m-%d')}. Every figure below is printed by the command beside it; ratios compare "
        "runs made in the same process or command.",
        "",
        f"Machine: {machine()}.",
        "",
        *gpu_note,
        "| benchmark | headline figures | goal | command |",
        "|---|---|---|---|",
        *summary,
        "",
        *sections,
    ])
    print(f"wrote {atomic_write_text(Path(args.out), text)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
