"""The `lottery` command: the `fit` experiment (lottery.experiment) and the tools inspect, report, stability, compare.

The top floor: nothing in lottery/ imports this module.
"""

from __future__ import annotations

import sys

from lottery.experiment import RECIPE, LotteryCLI, build_cli
from lottery.lock import RunLockedError
from lottery.resume import ResumeError

__all__ = ["TOOLS", "LotteryCLI", "main"]

TOOLS = {
    "inspect": "lottery inspect TICKET [TICKET2 ...]: per-layer density, metadata and mask overlap (Jaccard)",
    "report": "lottery report RUN_DIR [--out DIR]: accuracy-vs-density and layer-density plots, a markdown table",
    "stability": "lottery stability --config configs/NAME.yaml --rewinds 0 100 500 [--points 11]: instability per rewind point",
    "compare": "lottery compare --config configs/compare_NAME.yaml [--workers N] [--launcher local|ray]: a grid of runs",
    "export": "lottery export TICKET --config CONFIG.yaml --to csr|compact|semi-structured --out DIR [--weights CKPT] "
              "[--batch-size N [--threads T]]: a trained ticket as an inference model (model.safetensors, export.json)",
}


def _tool(argv: list[str]) -> None:
    """The subcommands beside `fit`: inspect, report, stability and compare."""
    import argparse

    from lottery import report as rep

    parser = argparse.ArgumentParser(prog=f"lottery {argv[0]}", description=TOOLS[argv[0]])
    if argv[0] == "stability":
        from lottery import stability

        parser.add_argument("--config", required=True, help="a `lottery fit` config (model, data, schedule)")
        parser.add_argument("--rewinds", type=int, nargs="+", required=True, help="rewind iterations k to test")
        parser.add_argument("--points", type=int, default=11, help="networks evaluated along each path")
        parser.add_argument("--out", default=None)
        ns, rest = parser.parse_known_args(argv[1:])
        print(f"wrote {stability.run(ns.config, ns.rewinds, ns.points, out=ns.out, args=rest)}")
    elif argv[0] == "compare":
        from lottery import compare

        parser.add_argument("--config", required=True, help="a comparison file (configs/compare_*.yaml)")
        parser.add_argument("--workers", type=int, default=None, help="parallel cells (default: one per GPU, else 1)")
        parser.add_argument("--launcher", choices=["local", "ray"], default=None)
        ns = parser.parse_args(argv[1:])
        print(f"wrote {compare.run(ns.config, ns.workers, ns.launcher)}")
    elif argv[0] == "export":
        from pathlib import Path

        import yaml
        from jsonargparse import ArgumentError
        from pytorch_lightning import LightningDataModule, LightningModule

        from lottery.experiment import LotteryParser
        from lottery.export import FORMATS, export_ticket
        from lottery.module import ClassificationModule
        from lottery.resume import newest_checkpoint

        parser.add_argument("ticket", help="a ticket of a run (<run>/tickets/round_NN.safetensors)")
        parser.add_argument("--config", required=True, help="the run's `lottery fit` config (its config.yaml): the model")
        parser.add_argument("--to", required=True, choices=FORMATS)
        parser.add_argument("--out", required=True, help="the folder to write model.safetensors and export.json to")
        parser.add_argument("--weights", default=None, help="the trained weights: a .ckpt or .safetensors state dict "
                            "(default: the newest checkpoint of the ticket's run, <run>/checkpoints/, which holds its "
                            "last round's); 'ticket': the ticket's rewind values (untrained)")
        parser.add_argument("--batch-size", type=int, default=None, help="csr: time each layer at this batch here and "
                            "keep it dense where CSR is slower (default: every masked layer CSR)")
        parser.add_argument("--threads", type=int, default=None, help="with --batch-size: the torch threads to time "
                            "with, as the model will run (default: torch's default here)")
        ns = parser.parse_args(argv[1:])
        if ns.threads:
            import torch

            torch.set_num_threads(ns.threads)
        if not Path(ns.config).is_file():
            raise SystemExit(f"lottery export: error: no config at {ns.config}; pass the run's config.yaml or the "
                             "configs/NAME.yaml it was started with")
        weights = ns.weights or newest_checkpoint(Path(ns.ticket).resolve().parent.parent.glob("checkpoints/*.ckpt"))
        # the model as `lottery fit` builds it from this config: its class and init args, sizes from the data
        raw = yaml.safe_load(Path(ns.config).read_text()) or {}
        spec = LotteryParser(exit_on_error=False)
        spec.add_subclass_arguments((ClassificationModule, LightningModule), "model", required=False, fail_untyped=False)
        spec.add_subclass_arguments(LightningDataModule, "data", required=False, fail_untyped=False)
        try:
            model = spec.resolve(spec.parse_object({k: raw.get(k) for k in ("model", "data")})).model.as_dict()
            for line in export_ticket(ns.ticket, model, ns.to, ns.out, weights, ns.batch_size):
                print(line)
        except (ArgumentError, OSError, ValueError, KeyError, RuntimeError, ImportError) as err:
            said = err.args[0] if isinstance(err, KeyError) and err.args else err  # str(KeyError) adds quotes
            raise SystemExit(f"lottery export: error: {said}") from err
    elif argv[0] == "inspect":
        parser.add_argument("tickets", nargs="+", help="ticket files (round_NN.safetensors)")
        print(rep.inspect(parser.parse_args(argv[1:]).tickets))
    else:
        parser.add_argument("run_dir", help="a run folder holding tickets/ and rounds.csv")
        parser.add_argument("--out", default=None, help="where to write (default: beside rounds.csv)")
        ns = parser.parse_args(argv[1:])
        for path in rep.report(ns.run_dir, ns.out):
            print(f"wrote {path}")


def main(args: list[str] | None = None) -> None:
    """Entry point of the `lottery` console script; a refused run (folder in use, nothing to resume, changed
    settings) exits with status 1 and its message."""
    argv = sys.argv[1:] if args is None else args
    try:
        if argv and argv[0] in TOOLS:
            return _tool(argv)
        if not argv or argv[0] in ("-h", "--help"):
            print("Subcommands that do not train:\n" + "\n".join(f"  {line}" for line in TOOLS.values()) + "\n")
            print(f"Your own LightningModule and data: {RECIPE} (lottery fit --help)\n")
        build_cli(args)
    except (RunLockedError, ResumeError) as err:
        raise SystemExit(f"lottery {argv[0]}: error: {err}") from err


if __name__ == "__main__":
    main()
