"""Building store models from the committed recipes in ``configs/store/NAME.yaml``.

A recipe names the trainer config it starts from, a ``demo`` and a ``full`` list of ``key=value``
overrides, the split it is scored on, and the words of its card that no measurement gives (intended
use, known failure modes, outside sources not scored). A build trains with
:func:`covidlens.training.fit.train`, scores the best epoch on the recipe's test split with intervals
(:func:`~covidlens.evaluation.evaluate.evaluate` for classifiers,
:func:`~covidlens.evaluation.segmentation.evaluate_segmentation` for segmenters), writes the card from
those figures, and installs the folder into the store in one rename. A model already installed is
reused unless ``force``. A recipe with ``lungs`` (cxr-classifier) trains on copies of its data set masked
by an installed store lung model (:func:`covidlens.data.derived.lung_input_table`) and records
``data.lungs`` in the checkpoint, so screening masks the same way. The ``modality`` recipe
(``trainer: modality``) has no trainer config: its overrides are :class:`~covidlens.modality.train.ModalitySettings`
and :func:`build_modality` trains the modality CNN with :mod:`covidlens.modality.train`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from covidlens.errors import CovidlensError
from covidlens.store.cards import read_card, write_card
from covidlens.store.store import ROLES, check_name, install, is_installed, model_dir, staging

RECIPE_DIR = Path(__file__).resolve().parents[3] / "configs" / "store"
VARIANTS = ("demo", "full")
#: Build order: a model another recipe needs comes first.
BUILD_ORDER = ("ct-lesions", "ct-classifier", "cxr-lungs", "cxr-classifier", "modality")


@dataclass
class Recipe:
    name: str
    path: Path
    config: Path | None
    overrides: dict[str, list[str]]
    score: dict[str, str]
    summary: str = ""
    intended_use: str = ""
    failure_modes: list[str] = field(default_factory=list)
    not_scored: list[str] = field(default_factory=list)
    #: Stage 2 of segment-then-classify: ``{model: STORE_NAME, input: masked|cropped}``, the installed lung
    #: model whose masks derive the training images (:func:`covidlens.data.derived.lung_input_table`).
    lungs: dict[str, str] = field(default_factory=dict)
    #: ``lightning`` (:func:`covidlens.training.fit.train` from ``config``) or ``modality``
    #: (:mod:`covidlens.modality.train`, no config).
    trainer: str = "lightning"
    #: Outside sets a classifier is scored on for its card: ``{dataset, split, class_map, note}`` each.
    outside: list[dict] = field(default_factory=list)


def recipe_path(name: str, recipe_dir: Path | None = None) -> Path:
    return (recipe_dir or RECIPE_DIR) / f"{check_name(name)}.yaml"


def read_recipe(name: str, recipe_dir: Path | None = None) -> Recipe:
    path = recipe_path(name, recipe_dir)
    if not path.is_file():
        raise CovidlensError(f"there is no committed recipe for {name} ({path}); build it from a source checkout of "
                             f"covidlens, or 'covidlens models pull {name}'.")
    raw = yaml.safe_load(path.read_text()) or {}
    recipes = raw.get("recipes") or {}
    trainer = raw.get("trainer", "lightning")
    if trainer not in ("lightning", "modality"):
        raise CovidlensError(f"recipe {path} names trainer {trainer!r}; it must be lightning or modality.")
    if (trainer == "lightning" and not isinstance(raw.get("config"), str)) or not all(
            isinstance(recipes.get(v), list) for v in VARIANTS):
        raise CovidlensError(f"recipe {path} needs 'config' and 'recipes' with a demo and a full list of overrides.")
    config = None
    if trainer == "lightning":
        config = Path(raw["config"])
        config = config if config.is_absolute() else path.parents[2] / config
    return Recipe(name, path, config, {v: [str(o) for o in recipes[v]] for v in VARIANTS}, raw.get("score") or {},
                  raw.get("summary", ""), str(raw.get("intended_use", "")).strip(), list(raw.get("failure_modes") or []),
                  list(raw.get("not_scored") or []), dict(raw.get("lungs") or {}), trainer,
                  _outside_sets(raw.get("outside"), path))


def _outside_sets(value: Any, path: Path) -> list[dict]:
    """The recipe's ``outside`` list, each ``{dataset, split (default test), class_map (optional), note}``."""
    sets = value or []
    ok = isinstance(sets, list) and all(
        isinstance(o, dict) and isinstance(o.get("dataset"), str) and set(o) <= {"dataset", "split", "class_map", "note"}
        and isinstance(o.get("class_map", {}), dict) for o in sets)
    if not ok:
        raise CovidlensError(f"recipe {path}: 'outside' must list mappings of dataset, split, class_map and note.")
    return [{"split": "test", "class_map": {}, "note": "", **o} for o in sets]


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "cores": os.cpu_count(), "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


def _metric(value: float, interval) -> dict[str, float | None]:
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    return {"value": float(value) if ok else None, "low": float(interval[0]) if interval else None,
            "high": float(interval[1]) if interval else None}


def classifier_figures(result: dict) -> tuple[dict, dict]:
    """The card's internal-test block and operating points from :func:`~covidlens.evaluation.evaluate.evaluate`."""
    metrics, points = {}, {}
    for key, point in result.get("operating_points", {}).items():
        points[key] = f"threshold {point['threshold']:.3f}"
        for name in ("auc", "accuracy", "recall", "specificity", "precision"):
            if name in point["metrics"]:
                label = "AUC" if name == "auc" else f"{name} @ {key}"
                if name == "auc" and "AUC" in metrics:
                    continue
                metrics[label] = _metric(point["metrics"][name], point["ci95"].get(name))
    block = {"source": f"{result['dataset']} / {result['split']}", "n": result["n_images"], "metrics": metrics,
             "note": f"intervals resample {result.get('bootstrap_resamples_what', 'images')}"}
    if result.get("sensitivity_threshold_source"):
        points["sensitivity threshold chosen on"] = result["sensitivity_threshold_source"]
    return block, points


def calibration_figures(ckpt, result: dict, dataset: str, root, split: str, n_boot: int,
                        renames: dict | None = None) -> dict:
    """ECE and Brier of the stored (calibrated) model, taken from ``result``, beside those of the same
    weights at temperature 1 (scored again), on a split other than the validation one it was fitted on."""
    from dataclasses import replace

    from covidlens.checkpoint import Checkpoint
    from covidlens.evaluation.evaluate import evaluate

    raw = Checkpoint(ckpt.model, replace(ckpt.info, temperature=1.0), ckpt.path)
    before = evaluate([raw], dataset, root=root, split=split, n_boot=n_boot, class_renames=renames)["calibration"]
    after = result["calibration"]
    metrics = {}
    for key, label in (("ece", "ECE"), ("brier", "Brier")):
        metrics[f"{label}, raw (T = 1)"] = _metric(before["metrics"][key], before["ci95"][key])
        metrics[f"{label}, calibrated (T = {ckpt.info.temperature:.2f})"] = _metric(after["metrics"][key], after["ci95"][key])
    return {"source": f"{result['dataset']} / {split}", "n": result["n_images"], "metrics": metrics,
            "note": f"{ckpt.info.calibration or 'not calibrated'}; judged on {split}, not on the split it was fitted on"}


def lesion_outside_figures(folder: Path, root, n_boot: int, seed: int = 0) -> dict:
    """A lesion model on COVID-CT-MD's volumes through the screen road (HU lungs, lesions inside them):
    per scan, the AUC of each slice's lesion area against the radiologists' infected-slice labels (95 %
    interval resampling slices, which neighbours make too narrow), and the lesion volume in mL."""
    import numpy as np

    from covidlens.data.datasets import load_dataset
    from covidlens.data.io import read_scan
    from covidlens.evaluation.metrics import binary_metrics, bootstrap_ci
    from covidlens.screening.road import ScreenModels, screen_scan

    table = load_dataset("covid-ct-md", root)
    infected = table.classes.index("infected")
    volumes: dict[Path, dict[int, int]] = {}
    for sample in table.samples:
        volumes.setdefault(sample.path, {})[sample.slice_index] = int(sample.label == infected)
    models = ScreenModels.load(lesion=folder, backend="torch")
    metrics = {}
    for path, labels in sorted(volumes.items()):
        subject = path.name.split(".")[0]
        evidence = screen_scan(read_scan(path), models, explain=False)
        area = np.array([row.get("lesion_mm2", row.get("lesion_px", 0)) for row in evidence.slices], dtype=float)
        y = np.array([labels.get(k, 0) for k in range(len(area))])
        if 0 < y.sum() < len(y):
            auc = binary_metrics(y, area)["auc"]
            metrics[f"infected-slice AUC, {subject}"] = _metric(auc, bootstrap_ci(y, area, n_boot=n_boot, seed=seed)["auc"])
        metrics[f"lesion volume mL, {subject} ({evidence.verdict.severity or 'n/a'})"] = _metric(
            evidence.measures.get("lesion_volume_ml"), None)
    return {"source": "covid-ct-md volumes through the screen road", "n": len(volumes), "unit": "scans",
            "metrics": metrics, "note": "slice AUC intervals resample slices (neighbours are not independent: too narrow)"}


def segmenter_figures(result: dict) -> dict:
    """The card's internal-test block from :func:`~covidlens.evaluation.segmentation.evaluate_segmentation`."""
    metrics = {key.replace("_", " "): _metric(result["metrics"][key], interval)
               for key, interval in result["ci95"].items() if key in result["metrics"]
               and key.split("/")[0] in ("mean_dice", "pooled_dice", "mean_iou", "mean_sensitivity")}
    return {"source": f"{result['dataset']} / {result['split']}", "n": result["n_slices"], "unit": "slices",
            "metrics": metrics, "note": f"intervals resample {result.get('bootstrap_resamples_what', 'slices')}"}


def build(name: str, variant: str = "demo", force: bool = False, extra: list[str] | None = None,
          recipe_dir: Path | None = None, n_boot: int = 1000, log: Callable[[str], None] = print) -> Path:
    """Train ``name`` from its recipe into the store (reused when installed, unless ``force``)."""
    from covidlens.checkpoint import load_checkpoint
    from covidlens.training.config import load_config
    from covidlens.training.fit import train

    check_name(name)
    if variant not in VARIANTS:
        raise CovidlensError(f"--recipe must be one of {', '.join(VARIANTS)}, not {variant!r}.")
    if is_installed(name) and not force:
        log(f"{name}: already installed in {model_dir(name)}, reused (--force rebuilds it)")
        return model_dir(name)
    recipe = read_recipe(name, recipe_dir)
    overrides = recipe.overrides[variant] + list(extra or [])
    if recipe.trainer == "modality":
        return build_modality(recipe, variant, overrides, n_boot, log)
    log(f"{name}: training from {recipe.path.name} ({variant}: {' '.join(overrides) or 'as committed'})")
    with staging(name) as scratch:
        values = {"name": "run", "trainer.out_dir": str(scratch)}
        config = load_config(recipe.config, overrides, values)
        source = config.data.dataset
        derived = _derive_lung_inputs(name, recipe, config, log) if recipe.lungs else {}
        if derived:
            config = load_config(recipe.config, overrides, {**values, "data.dataset": derived["table"],
                                                            "data.lungs": derived["input"]})
        started = time.perf_counter()
        run = train(config, progress=False)  # EpochLine still prints one line per epoch
        minutes = (time.perf_counter() - started) / 60
        folder = run / "model"
        ckpt = load_checkpoint(folder)
        role = ROLES[name]
        card: dict[str, Any] = {
            "name": name, "summary": recipe.summary, "built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "architecture": ckpt.info.model, "task": ckpt.info.task, "modality": ckpt.info.modality,
            "classes": ckpt.info.classes,
            "data": {"dataset": ckpt.info.dataset, "split": _split_words(config, source),
                     "input_size": ckpt.info.input_size, **derived.get("card", {})},
            "recipe": {"file": str(recipe.path.relative_to(recipe.path.parents[2])), "variant": variant,
                       "config": str(recipe.config.name), "overrides": overrides or ["none"]},
            "training": {"minutes": round(minutes, 1), "epochs": config.optim.epochs, **machine()},
            "intended_use": recipe.intended_use, "failure_modes": recipe.failure_modes,
            "not_scored": recipe.not_scored,
        }
        dataset, split = recipe.score.get("dataset", config.data.dataset), recipe.score.get("split", "test")
        log(f"{name}: scoring on {dataset} / {split}")
        if role.task == "classification":
            from covidlens.evaluation.evaluate import evaluate

            result = evaluate([ckpt], dataset, root=config.data.root, split=split, n_boot=n_boot)
            card["internal_test"], card["operating_points"] = classifier_figures(result)
            if derived:
                card["internal_test"]["source"] = f"{source} lung-{derived['input']} / {split}"
                card["internal_test"]["note"] = f"intervals resample {derived['groups']} groups"
            card["calibration"] = calibration_figures(ckpt, result, dataset, config.data.root, split, n_boot)
            card["outside"] = []
            for spec in recipe.outside:
                log(f"{name}: scoring outside on {spec['dataset']} / {spec['split']}")
                outside = evaluate([ckpt], spec["dataset"], root=config.data.root, split=spec["split"], n_boot=n_boot,
                                   class_renames=spec["class_map"])
                block, _ = classifier_figures(outside)
                block["metrics"].update(calibration_figures(ckpt, outside, spec["dataset"], config.data.root,
                                                            spec["split"], n_boot, spec["class_map"])["metrics"])
                block["note"] = "; ".join(filter(None, [spec["note"], block["note"]]))
                card["outside"].append(block)
        else:
            from covidlens.evaluation.segmentation import evaluate_segmentation

            result = evaluate_segmentation(ckpt, dataset, root=config.data.root, split=split, n_boot=n_boot,
                                           overlays=False)
            card["internal_test"] = segmenter_figures(result)
            card["outside"] = []
            for spec in recipe.outside:
                if spec["dataset"] != "covid-ct-md":
                    raise CovidlensError(f"recipe {recipe.path}: a lesion model is scored outside on covid-ct-md only.")
                log(f"{name}: screening the COVID-CT-MD volumes with it")
                block = lesion_outside_figures(folder, config.data.root, n_boot)
                block["note"] = "; ".join(filter(None, [spec["note"], block["note"]]))
                card["outside"].append(block)
        write_card(folder, card)
        target = install(name, folder, scratch)
    log(f"{name}: built in {minutes:.1f} min, installed in {target}")
    return target


def _derive_lung_inputs(name: str, recipe: Recipe, config, log: Callable[[str], None]) -> dict[str, Any]:
    """The CSV table of ``config.data.dataset`` as the recipe's lung model masks (or crops) it."""
    from covidlens.data.datamodule import limit_per_class
    from covidlens.data.datasets import load_dataset
    from covidlens.data.derived import lung_input_table

    lung_name, kind = recipe.lungs.get("model", "cxr-lungs"), recipe.lungs.get("input", "masked")
    if not is_installed(lung_name):
        raise CovidlensError(f"{name} trains on images masked by the store's {lung_name} model, which is not "
                             f"installed: build it first with 'covidlens models build {lung_name}' (or pass --all).")
    table = load_dataset(config.data.dataset, config.data.root)
    if config.data.limit_per_class:
        # Only the training images the trainer will take (the same first N per class, in table order).
        train = set(map(id, limit_per_class(table.split("train"), config.data.limit_per_class)))
        table = dataclasses.replace(table, samples=[s for s in table.samples if s.split != "train" or id(s) in train])
    log(f"{name}: lung-{kind} copies of {len(table.samples)} {table.name} images by {lung_name} (cached)")
    csv_path = lung_input_table(model_dir(lung_name), table, kind, log=log)
    lung_card = read_card(lung_name) or {}
    card = {"lungs": f"{kind} by the store's {lung_name} model (built {lung_card.get('built', '?')}) before training "
                     "and at screening"}
    return {"table": str(csv_path), "input": kind, "groups": table.group_kind, "card": card}


def _split_words(config, source: str) -> str:
    words = f"{source}: its train split for training, validation split (or held-out training groups) " \
            "for the best epoch and the operating point, test split for the figures below"
    if config.data.limit_per_class:
        words += f"; at most {config.data.limit_per_class} training images per class"
    return words


def build_all(variant: str = "demo", force: bool = False, extra: list[str] | None = None,
              log: Callable[[str], None] = print) -> list[Path]:
    return [build(name, variant, force, extra, log=log) for name in BUILD_ORDER]


def build_modality(recipe: Recipe, variant: str, overrides: list[str], n_boot: int = 1000,
                   log: Callable[[str], None] = print) -> Path:
    """Train the modality CNN (:mod:`covidlens.modality.train`) into the store, with its card.

    ``overrides`` are ``key=value`` settings of :class:`~covidlens.modality.train.ModalitySettings`, and
    ``data.root=FOLDER`` (what ``--data-root`` passes). The card's internal test is the whole check's
    accuracy on each held-out group (real sets' test splits, generated negatives with held-out seeds,
    a held-out generator and held-out real photographs), with 95 % bootstrap intervals over the images;
    groups below 0.99 are listed as failure modes with their figures."""
    from covidlens.data.datasets import default_data_root
    from covidlens.modality.check import THUMBNAIL
    from covidlens.modality.train import ARCHITECTURE, ModalitySettings, fit, gather, save_model, score

    roots = [o.split("=", 1)[1] for o in overrides if o.startswith("data.root=")]
    settings = ModalitySettings.from_overrides([o for o in overrides if not o.startswith("data.root=")])
    root = Path(roots[-1]) if roots else default_data_root()
    name = recipe.name
    log(f"{name}: training from {recipe.path.name} ({variant}: {' '.join(overrides) or 'as committed'})")
    with staging(name) as scratch:
        started = time.perf_counter()
        data = gather(root, settings, log=lambda line: log(f"{name}: {line}"))
        fitted = fit(data, settings, log=log)
        minutes = (time.perf_counter() - started) / 60
        folder = save_model(fitted.net, scratch / "model")
        log(f"{name}: scoring on the held-out test groups")
        rows = score(fitted.net, data, n_boot=n_boot, seed=settings.seed)
        metrics = {f"{row['group']} ({row['n']})": _metric(row["check_accuracy"], row["check_ci95"]) for row in rows}
        n_test = sum(row["n"] for row in rows)
        measured_failures = [
            f"{row['group']}: {row['check_accuracy']:.3f} of {row['n']} held-out images called right by the whole "
            f"check (CNN alone {row['cnn_accuracy']:.3f})" for row in rows if row["check_accuracy"] < 0.99]
        real_train = {n: c.get("train", 0) for n, c in data.counts.items()}
        card: dict[str, Any] = {
            "name": name, "summary": recipe.summary,
            "built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "architecture": f"{ARCHITECTURE} (covidlens.modality.check.ModalityNet, {THUMBNAIL} px grey thumbnail)",
            "task": "classification", "modality": "any image: ct, cxr or other", "classes": ["ct", "cxr", "other"],
            "data": {"real training images per set": real_train,
                     "generated negatives per kind": f"{settings.negatives} for training, {settings.negatives_eval} "
                                                     "each for validation and test (disjoint seeds)",
                     "real photographs": f"{len(data.photos)} for training ({', '.join(data.photos) or 'none'}), "
                                         f"held out for test: {', '.join(data.held_out_pictures) or 'none'}",
                     "split": "each registered set's own train / val / test split (COVID-CT-MD: cap001 trains, "
                              "normal001 validates, P001 tests; covid-chestxray CT figures by patient 70/10/20); "
                              "the best epoch is the one with the best mean validation accuracy over sets and kinds"},
            "recipe": {"file": str(recipe.path.relative_to(recipe.path.parents[2])), "variant": variant,
                       "trainer": "covidlens.modality.train", "overrides": overrides or ["none"],
                       "settings": dataclasses.asdict(settings)},
            "training": {"minutes": round(minutes, 1), "epochs": settings.epochs, "best epoch": fitted.best_epoch,
                         "validation mean accuracy": round(fitted.val_mean_accuracy, 4), **machine()},
            "internal_test": {"source": "held-out test groups (whole check: DICOM header, rules, then the CNN)",
                              "n": n_test, "metrics": metrics,
                              "note": "accuracy per group; intervals resample the group's images"},
            "intended_use": recipe.intended_use,
            "failure_modes": list(recipe.failure_modes) + measured_failures,
            "not_scored": recipe.not_scored,
        }
        write_card(folder, card)
        target = install(name, folder, scratch)
    log(f"{name}: built in {minutes:.1f} min, installed in {target}")
    return target
