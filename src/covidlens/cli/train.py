"""``covidlens train``: train a classifier from a YAML config."""

from __future__ import annotations

from covidlens.cli.common import add_data_args

#: Flags that carry typed values straight into the config; only --set goes through YAML parsing.
FLAG_KEYS = (
    ("name", "name"), ("out_dir", "trainer.out_dir"), ("model", "model.name"), ("epochs", "optim.epochs"),
    ("lr", "optim.lr"), ("batch_size", "optim.batch_size"), ("input_size", "model.input_size"), ("seed", "seed"),
    ("data", "data.dataset"), ("data_root", "data.root"), ("positive_class", "data.positive_class"),
)


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a classifier from a YAML config")
    p.add_argument("--config", help="YAML experiment config (configs/*.yaml); defaults apply without one")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=3e-4 (repeatable)")
    p.add_argument("--name", help="run name (folder under the output directory)")
    p.add_argument("--out-dir", help="output directory for runs (default runs/)")
    p.add_argument("--model", help="registered model name (see 'covidlens models')")
    p.add_argument("--epochs", type=int, help="number of training epochs")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--batch-size", type=int, help="images per training batch")
    p.add_argument("--input-size", type=int, help="square input side in pixels")
    p.add_argument("--seed", type=int, help="random seed of the run")
    p.add_argument("--positive-class", help="class whose probability is the score (default: the data set's)")
    p.add_argument("--no-pretrained", action="store_true", help="train from scratch")
    p.add_argument("--resume", action="store_true", help="continue the run of this name from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch is still printed)")
    add_data_args(p, default=None)
    p.set_defaults(run=run)


def run(args) -> int:
    from covidlens.training.config import load_config
    from covidlens.training.fit import train
    from covidlens.training.report import write_training_curves

    direct = {key: getattr(args, flag) for flag, key in FLAG_KEYS if getattr(args, flag) is not None}
    if args.no_pretrained:
        direct["model.pretrained"] = False
    config = load_config(args.config, args.overrides, direct)
    run_dir = train(config, resume=args.resume, progress=not args.no_progress)
    write_training_curves(run_dir)
    print(f"trained: {run_dir / 'model'}  (config {run_dir / 'config.yaml'}, logs {run_dir / 'logs'}, "
          f"curves {run_dir / 'training_curves.png'})")
    return 0
