"""``covidlens data``: list, describe or download the data sets."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="list, describe or download data sets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = dsub.add_parser("list", help="registered data sets, where they are expected, their layout and traps")
    q.add_argument("--data-root", default=None, help="folder holding the data sets (default: $COVIDLENS_DATA)")
    q.add_argument("--short", action="store_true", help="one line per data set, without layout and traps")
    q.set_defaults(run=run_list)
    q = dsub.add_parser("info", help="image counts per split and class")
    q.add_argument("dataset", help="a registered name, a folder of class folders, or a CSV table")
    q.add_argument("--data-root", default=None, help="folder holding the data sets (default: $COVIDLENS_DATA)")
    q.set_defaults(run=run_info)
    q = dsub.add_parser("download", help="download a public data set (needs internet)")
    q.add_argument("dataset", help="a registered name")
    q.add_argument("--data-root", default=None, help="folder to download into (default: $COVIDLENS_DATA)")
    q.set_defaults(run=run_download)


def run_list(args) -> int:
    from covidlens.data.datasets import dataset_folder, default_data_root, describe_dataset, list_datasets

    print(f"data root: {args.data_root or default_data_root()} (set $COVIDLENS_DATA or --data-root)")
    for name in list_datasets():
        folder = dataset_folder(name, args.data_root)
        about = describe_dataset(name)
        print(f"{name:<28} {about.modality:<4} {about.task:<15} {'present' if folder.is_dir() else 'missing'}  {folder}")
        if not args.short:
            print(f"    {about.description}")
            for trap in about.traps:
                print(f"    trap: {trap}")
    return 0


def run_info(args) -> int:
    from covidlens.data.datasets import load_dataset

    table = load_dataset(args.dataset, args.data_root)
    positive = f"; positive class {table.positive_class}" if table.positive_class else ""
    print(f"{table.name}: {table.modality} {table.task}, classes {', '.join(table.classes)}{positive}; "
          f"groups: {table.group_kind}")
    for split, counts in table.counts().items():
        print(f"  {split:<5} " + "  ".join(f"{c}={n}" for c, n in counts.items()))
    return 0


def run_download(args) -> int:
    from covidlens.data.datasets import dataset_folder
    from covidlens.data.download import download_dataset

    folder = dataset_folder(args.dataset, args.data_root)
    digests = download_dataset(args.dataset, folder)
    for url, digest in digests.items():
        print(f"{digest}  {url}")
    print(f"downloaded {args.dataset} to {folder}")
    return 0
