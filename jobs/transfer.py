"""Fine-tune a Kinetics-pretrained TDN on UCF101 and HMDB51, three official splits each (the paper's Table 4).

    python jobs/transfer.py --config jobs/configs/transfer_k400_r50.yaml --pretrained models:/tdn-k400@champion \
        --data.ucf101_root data/UCF101 --data.hmdb51_root data/HMDB51 --tracking-uri http://mlflow:5000
    python jobs/transfer.py --official-checkpoint TDN_k400_R50_8f.pth.tar --arch resnet50 ...

The released recipe is the default (16 segments, lr 0.002 for a batch of 128, steps 10/20, 25 epochs,
dropout 0.8, new classifier). Each split: shard job -> Ray Train run -> evaluation of the test list. One
parent MLflow run with a child run per split; prints the per-split and mean top-1 as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python jobs/transfer.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ConfigError, add_config_aliases, add_config_arguments, config_from_args

ALIASES = {
    "--pretrained": "pretrained.uri",
    "--checkpoint": "pretrained.uri",
    "--ucf101": "data.ucf101_root",
    "--hmdb51": "data.hmdb51_root",
    "--official-checkpoint": "pretrained.official",
    "--arch": "pretrained.arch",
    "--segments": "num_segments",
    "--workers": "run.workers",
    "--tracking-uri": "tracking_uri",
}


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from tdn.evaluation.transfer import TransferConfig, run_transfer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    add_config_aliases(parser, ALIASES)
    add_config_arguments(parser, TransferConfig)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(TransferConfig, args)
        cfg.pretrained.check()
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    report = run_transfer(cfg, address=args.address)
    print(json.dumps(dataclasses.asdict(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
