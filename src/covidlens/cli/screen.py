"""``covidlens screen``: one answer per study (a DICOM series, a NIfTI volume, an image), with its evidence."""

from __future__ import annotations

import sys

from covidlens.evaluation.operating_points import NAMES as OPERATING_POINTS


def add_parser(sub) -> None:
    p = sub.add_parser("screen", help="one verdict per study (series, volume or image): lesions, severity, COVID-19 score")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a DICOM series folder, a NIfTI volume, an image, or a folder of studies (each series folder "
                        "and each loose image is one study)")
    p.add_argument("--out", required=True, help="output folder: one folder per study, results.csv and index.html")
    p.add_argument("--lesion-checkpoint", help="CT lesion segmentation model (the verdict on CT rests on it); with none "
                   "of the four model flags, every model installed in the store (covidlens models list)")
    p.add_argument("--ct-checkpoint", help="CT classifier (second line of evidence on CT)")
    p.add_argument("--cxr-lung-checkpoint", help="chest X-ray lung model (background, lung)")
    p.add_argument("--cxr-checkpoint", help="chest X-ray classifier (raw or lung-masked, as its checkpoint says)")
    p.add_argument("--operating-point", choices=OPERATING_POINTS, default="default",
                   help="'default' or 'sensitivity' (fewer missed studies, more false alarms); see "
                        "covidlens.screening.verdict for what each means")
    p.add_argument("--modality", choices=["ct", "cxr"],
                   help="read every study as this modality, overruling the header and the modality check (stated)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"],
                   help="engine for the classifiers (default: onnxruntime where installed, else torch)")
    p.add_argument("--shard", metavar="K/N",
                   help="screen only shard K of N; 'env' reads K and N from torchrun (RANK, WORLD_SIZE) or a SLURM job "
                        "array (scripts/slurm_screen.sh); shards may share one --out")
    p.add_argument("--workers", type=int, help="processes reading studies ahead (default: spare cores, at most 4; 0: none)")
    p.add_argument("--overwrite", action="store_true",
                   help="screen again and replace study folders already there (default: keep them and resume)")
    p.set_defaults(run=run)


def run(args) -> int:
    from covidlens.cli.common import screen_models_or_store
    from covidlens.errors import CovidlensError
    from covidlens.screening import ScreenModels, screen
    from covidlens.screening.archive import parse_shard

    shard = parse_shard(args.shard)
    if args.workers is not None and args.workers < 0:
        raise CovidlensError(f"--workers must be 0 or more, not {args.workers}.")
    chosen = screen_models_or_store(args.lesion_checkpoint, args.ct_checkpoint, args.cxr_lung_checkpoint,
                                    args.cxr_checkpoint)
    models = ScreenModels.load(**chosen, backend=args.backend)
    for role, m in models.describe().items():
        print(f"model {role}: {m['architecture']} ({m['path']}, {m['engine']})")
    print(f"{'study':<48}  {'modality':<8}  {'lesions':<12}  {'severity':<8}  {'score':>6}  decision")

    def show(row: dict) -> None:
        key = row["key"] if len(row["key"]) <= 48 else "..." + row["key"][-45:]
        if row["status"] != "screened":
            print(f"{key:<48}  failed: {row['error']}", flush=True)
            return
        score = "-" if row["covid19_score"] is None else f"{row['covid19_score']:.3f}"
        print(f"{key:<48}  {row['modality']:<8}  {row['lesions']:<12}  {row['severity'] or '-':<8}  {score:>6}  "
              f"{row['decision']}", flush=True)

    result = screen(args.inputs, args.out, models, operating_point=args.operating_point, overwrite=args.overwrite,
                    shard=shard, workers=args.workers, modality=args.modality, on_result=show)
    total = len(result.rows)
    positive = sum(r.get("lesions") == "yes" for r in result.rows)
    resumed = f", {result.resumed} already done by an earlier run" if result.resumed else ""
    print(f"screened {total - result.failed} of {total} studies ({positive} with pneumonia-pattern lesions){resumed}; "
          f"written: {result.out_dir}/index.html, {result.out_dir}/results.csv")
    if result.failed:
        print(f"covidlens: {result.failed} of {total} studies could not be screened; their rows carry the reason.",
              file=sys.stderr)
        return 1
    return 0
