"""python -m ai500.data generate BENCHMARK-DATASET --preset P --out DIR: write a synthetic dataset
in the real file layout, with the sizes of the given preset (or --train/--val events)."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from ai500 import config
from ai500.data.hep import COMPRESSIONS
from ai500.errors import Ai500Error, ConfigError

# dataset name -> the benchmark whose presets give its sizes
DATASETS = {"hep": "resnet", "cosmo": "dcgan", "weather": "faster_rcnn"}
# dataset name -> the module whose generate_dataset writes it
GENERATORS = {"hep": "ai500.data.hep", "cosmo": "ai500.data.cosmo",
              "weather": "ai500.data.weather_synthetic"}
# dataset name -> its generate_dataset's size arguments and the preset `data` keys that give them
SIZE_KEYS = {"hep": {"image_size": "image_size"}, "cosmo": {"image_size": "image_size"},
             "weather": {"height": "field_height", "width": "field_width"}}


def main(argv: list[str] | None = None) -> int:
    parser = config.OneLineArgumentParser(prog="python -m ai500.data",
                                          description="Generate synthetic datasets in the real layouts.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a synthetic dataset")
    gen.add_argument("dataset", choices=sorted(DATASETS), help="which dataset")
    gen.add_argument("--preset", default="small", choices=config.PRESETS,
                     help="take sizes and image size from this preset [default: small]")
    gen.add_argument("--out", required=True, help="output directory (must not hold the files yet)")
    gen.add_argument("--train", type=config._positive_int, help="training events (overrides preset)")
    gen.add_argument("--val", type=config._positive_int, help="validation events (overrides preset)")
    gen.add_argument("--seed", type=config._nonnegative_int, help="data seed (overrides preset)")
    gen.add_argument("--compression", choices=sorted(COMPRESSIONS),
                     help="hep only: HDF5 chunk compression [default: gzip]. gzip files are ~17x "
                     "smaller; streaming (--stage stream) raw chunks costs the training cores less")
    try:
        args = parser.parse_args(argv)
        if args.compression is not None and args.dataset != "hep":
            raise ConfigError(f"--compression applies to hep only; {args.dataset} is written "
                              "uncompressed")
    except ConfigError as exc:
        print(f"ai500: error: {exc}", file=sys.stderr)
        return 2
    try:
        benchmark = DATASETS[args.dataset]
        data = config.load_preset(benchmark, args.preset).get("data", {})
        needed = ["n_train", "n_val", "seed", *SIZE_KEYS[args.dataset].values()]
        missing = [key for key in needed if key not in data]
        if missing:
            raise ConfigError(f"preset {args.preset!r} of {benchmark} has no data {', '.join(missing)}")
        sizes = {arg: data[key] for arg, key in SIZE_KEYS[args.dataset].items()}
        if args.compression is not None:
            sizes["compression"] = COMPRESSIONS[args.compression]
        generator = importlib.import_module(GENERATORS[args.dataset])

        start = time.perf_counter()
        paths = generator.generate_dataset(Path(args.out), args.train or data["n_train"],
                                           args.val or data["n_val"],
                                           data["seed"] if args.seed is None else args.seed,
                                           **sizes)
    except Ai500Error as exc:
        print(f"ai500: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ai500: error: cannot write the dataset under {args.out}: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path}")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
