"""The registered chest X-ray sets: their folder layouts, labels, groups, splits and traps.

Sets without an official split get a seeded, patient- (or near-duplicate-group-) disjoint one from
:func:`~covidlens.data.sets.core.group_split`, 70/10/20 within each class, the same on every machine.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

from covidlens.data.sets.core import Sample, SampleTable, group_split, read_csv_rows, register_dataset
from covidlens.data.sets.near_duplicates import MAX_DISTANCE, near_duplicate_groups
from covidlens.errors import CovidlensError

SPLIT_SEED = 0


def _need_dir(path: Path) -> Path:
    if not path.is_dir():
        raise CovidlensError(f"{path} is missing; the data set folder is incomplete.")
    return path


CHESTXRAY_CLASSES = ["other", "COVID-19"]


@register_dataset(
    "covid-chestxray",
    "cxr/covid-chestxray",
    modality="cxr",
    task="classification",
    description="""COVID-19 image data collection (Cohen et al. 2020): images/ (CXR and some CT figures) and
    metadata.csv (patientid, finding, view, modality, filename, license, ...). Kept: X-ray rows whose image
    is present, frontal views (PA, AP, AP Supine and unstated), finding not 'todo'; one sample per image
    file. Classes: 'other' (No Finding and the other pneumonias: SARS, Pneumocystis, Streptococcus, ...) and
    'COVID-19' (positive; findings 'COVID-19' and 'COVID-19, ARDS'). Group = patient; seeded patient-disjoint
    split 70/10/20 within each class. Mask = lung-masks-lungvae/<stem>_mask.png where one exists.""",
    traps=(
        "Lung masks are lungVAE model output (Selvan et al. 2020), not manual: no ground truth for segmentation.",
        "Two images are listed under two patient ids each (285/339, 287/340): such ids are merged into one group.",
        "Patients appear with several findings over time (e.g. COVID-19 then No Finding); split by patient only.",
        "Images come from papers and websites: sizes, crops, annotations and licences (per image) vary.",
        "Its COVID-19 images overlap other COVID collections (covid19-radiography): never train on one and "
        "test on the other.",
    ),
)
def load_covid_chestxray(folder: Path) -> SampleTable:
    present = {p.name for p in _need_dir(folder / "images").iterdir()}
    masks = {p.name for p in (folder / "lung-masks-lungvae").glob("*_mask.png")}
    rows: dict[str, dict[str, str]] = {}
    patients_of: dict[str, set[str]] = {}
    for row in read_csv_rows(folder / "metadata.csv"):
        if row["filename"] not in present:
            continue
        patients_of.setdefault(row["filename"], set()).add(row["patientid"])
        if row["modality"] == "X-ray" and row["view"] != "L" and row["finding"] != "todo":
            rows.setdefault(row["filename"], row)
    # Patient ids that share any image file (kept or not) are one person: merge them (union-find).
    parent: dict[str, str] = {}

    def root(p: str) -> str:
        while parent.setdefault(p, p) != p:
            p = parent[p]
        return p

    for ids in patients_of.values():
        first, *rest = sorted(ids)
        for other in rest:
            a, b = sorted((root(first), root(other)))
            parent[b] = a
    members: dict[str, set[str]] = defaultdict(set)
    for ids in patients_of.values():
        for p in ids:
            members[root(p)].add(p)
    names = sorted(rows)
    groups = ["+".join(sorted(members[root(min(patients_of[n]))])) for n in names]
    labels = [int("COVID-19" in rows[n]["finding"]) for n in names]
    splits = group_split(groups, labels, seed=SPLIT_SEED)
    samples = []
    for name, group, label, split in zip(names, groups, labels, splits):
        row = rows[name]
        mask_name = f"{Path(name).stem}_mask.png"
        mask = folder / "lung-masks-lungvae" / mask_name if mask_name in masks else None
        meta = {k: row[k] for k in ("finding", "view", "sex", "age", "license", "patientid")}
        if mask is not None:
            meta["mask_source"] = "lungVAE model output"
        samples.append(Sample(folder / "images" / name, label, split, group, mask=mask, meta=meta))
    return SampleTable(
        "covid-chestxray", list(CHESTXRAY_CLASSES), samples, positive_class="COVID-19", modality="cxr",
        group_kind="patient",
    )


@register_dataset(
    "covid19-radiography",
    "cxr/covid19-radiography",
    modality="cxr",
    task="classification",
    description=f"""COVID-19 Radiography Database (Chowdhury et al. 2020; Rahman et al. 2021), a part:
    COVID/ 1201 and Normal/ 1200 (adult normals) 224x224 JPEG. Classes Normal, COVID (positive). No patient
    ids and nothing in the folder marks near-duplicates, so they are found by a 256-bit DCT hash (two images
    within {MAX_DISTANCE} bits are one group, groups chain; hashes cached under ~/.cache/covidlens): group =
    the near-duplicate group, seeded group-disjoint split 70/10/20 within each class.""",
    traps=(
        "Its COVID class overlaps other COVID collections, covid-chestxray included: never train on one and "
        "test on the other as if they were independent.",
        "No patient ids: near-duplicate groups (about 300 images in 130 groups) stand in for patients; "
        "different radiographs of one patient can still straddle the split.",
        "COVID images come from many hospitals and papers, the Normals from fewer sources: source can stand in "
        "for disease.",
        "Grey images stored as 3-channel JPEG.",
    ),
)
def load_covid19_radiography(folder: Path) -> SampleTable:
    classes = ["Normal", "COVID"]
    paths, labels = [], []
    for label, cls in enumerate(classes):
        found = sorted(p for p in _need_dir(folder / cls).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        paths += found
        labels += [label] * len(found)
    groups = near_duplicate_groups(paths, folder)
    splits = group_split(groups, labels, seed=SPLIT_SEED)
    samples = [Sample(p, lab, s, g) for p, lab, s, g in zip(paths, labels, splits, groups)]
    return SampleTable(
        "covid19-radiography", classes, samples, positive_class="COVID", modality="cxr", group_kind="near-duplicate"
    )


SUTD_CLASSES = ["normal", "covid", "non-covid"]
_SUTD_FOLDERS = {"normal": "normal", "covid": "infected/covid", "non-covid": "infected/non-covid"}
_SUTD_LAYOUT = """SUTD 50.039 course set: {train,val,test}/normal, .../infected/covid, .../infected/non-covid,
    150x150 grey JPEG (train 1341/1345/2530, val 8/9/8, test 234/139/242), and sutd_to_kermany_map.csv
    mapping each file to its Kermany pediatric source image and patient. Classes normal, covid, non-covid as
    the folders name them; no positive class (a 3-class set). Group = the Kermany patient id (the 16 val
    files the map could not match are their own groups)."""
_SUTD_TRAPS = (
    "NOT COVID-19: every image is a pediatric Kermany et al. (2018) CXR; 'covid' is viral pneumonia and "
    "'non-covid' is bacterial pneumonia. Results on it are no evidence of COVID-19 detection: say so "
    "wherever they are shown.",
    "The official split is not patient-disjoint (170 Kermany patients straddle it): use sutd-3class-patient "
    "for a patient-disjoint one.",
    "Some Kermany images appear twice in the set (30 source images map to two or three files).",
    "The official val split has 25 images: too few to choose a threshold or stop training on.",
)


def _sutd_samples(folder: Path) -> list[Sample]:
    mapping = {r["sutd_path"].removeprefix("dataset/"): r for r in read_csv_rows(folder / "sutd_to_kermany_map.csv")}
    samples = []
    for split in ("train", "val", "test"):
        for label, cls in enumerate(SUTD_CLASSES):
            for path in sorted(_need_dir(folder / split / _SUTD_FOLDERS[cls]).glob("*.jpg")):
                rel = str(path.relative_to(folder))
                row = mapping.get(rel, {})
                patient = row.get("kermany_patient_id", "")
                meta = {
                    "kermany_type": row.get("kermany_type", ""),
                    "kermany_path": row.get("kermany_path_in_kermany_pediatric_224", ""),
                }
                samples.append(Sample(path, label, split, patient or f"unmapped:{rel}", meta=meta))
    return samples


@register_dataset(
    "sutd-3class",
    "cxr/sutd-3class",
    modality="cxr",
    task="classification",
    description=_SUTD_LAYOUT + " The official (course) split.",
    traps=_SUTD_TRAPS,
)
def load_sutd_3class(folder: Path) -> SampleTable:
    return SampleTable("sutd-3class", list(SUTD_CLASSES), _sutd_samples(folder), modality="cxr", group_kind="patient")


@register_dataset(
    "sutd-3class-patient",
    "cxr/sutd-3class",
    modality="cxr",
    task="classification",
    description=_SUTD_LAYOUT + """ A patient-disjoint variant of the official split: a patient with any image
    in the official test split has all its images in test, then one with any in val has all in val, the rest
    is train. The official test images all stay in test, so results stay comparable with the report's.""",
    traps=_SUTD_TRAPS[:1] + _SUTD_TRAPS[2:],
)
def load_sutd_3class_patient(folder: Path) -> SampleTable:
    samples = _sutd_samples(folder)
    splits_of: dict[str, set[str]] = {}
    for s in samples:
        splits_of.setdefault(s.group, set()).add(s.split)
    moved = [
        dataclasses.replace(s, split=next(x for x in ("test", "val", "train") if x in splits_of[s.group]))
        for s in samples
    ]
    return SampleTable("sutd-3class-patient", list(SUTD_CLASSES), moved, modality="cxr", group_kind="patient")


@register_dataset(
    "lung-masks-shenzhen-montgomery",
    "cxr/lung-masks-shenzhen-montgomery",
    modality="cxr",
    task="segmentation",
    description="""Shenzhen (CHNCXR_*) and Montgomery (MCUCXR_*) CXRs (Jaeger et al. 2014): images/ 704 and masks/
    704 with the same names, 256x256 grey PNG, manual lung masks 0/255 (both lungs, one label: mask classes
    background, lung). One image per patient, so group = the image; seeded split 70/10/20 within each
    source and finding. No image-level label (label -1); meta 'finding' normal/tuberculosis from the name
    suffix _0/_1, 'source' Shenzhen/Montgomery from the prefix.""",
    traps=(
        "Two sources with different scanners and populations (Shenzhen 566, Montgomery 138).",
        "About half the images show tuberculosis: lung masks of diseased lungs are included.",
        "Masks are stored 0/255: threshold at 127 to get classes 0/1.",
    ),
)
def load_lung_masks_shenzhen_montgomery(folder: Path) -> SampleTable:
    sources = {"CHNCXR": "Shenzhen", "MCUCXR": "Montgomery"}
    images = sorted(_need_dir(folder / "images").glob("*.png"))
    metas = []
    for path in images:
        prefix, suffix = path.stem.split("_")[0], path.stem.rsplit("_", 1)[-1]
        finding = {"0": "normal", "1": "tuberculosis"}.get(suffix, "unknown")
        metas.append({"source": sources.get(prefix, "unknown"), "finding": finding})
    groups = [p.stem for p in images]
    splits = group_split(groups, [(m["source"], m["finding"]) for m in metas], seed=SPLIT_SEED)
    samples = []
    for path, meta, split in zip(images, metas, splits):
        mask = folder / "masks" / path.name
        if not mask.is_file():
            raise CovidlensError(
                f"{mask} (the lung mask of {path.name}) is missing; the data set folder is incomplete."
            )
        samples.append(Sample(path, -1, split, path.stem, mask=mask, meta=meta))
    return SampleTable(
        "lung-masks-shenzhen-montgomery", [], samples, task="segmentation", modality="cxr", group_kind="patient",
        mask_classes=["background", "lung"],
    )


ADULT_3CLASS = ["normal", "other-pneumonia", "COVID-19"]


@register_dataset(
    "cxr-adult-3class",
    "cxr",
    modality="cxr",
    task="classification",
    description="""Adult chest X-rays in three classes, normal / other-pneumonia / COVID-19 (positive), built
    from two folders of the data root's cxr/: covid-chestxray's frontal X-rays (COVID-19, the other
    pneumonias of the same collection: SARS, Pneumocystis, Streptococcus, ...; its 'No Finding' images
    are normal) split by patient 70/10/20 within each class, plus the adult Normals of covid19-radiography
    with that set's own near-duplicate-group split. meta 'source' says which collection an image is from.
    Group = patient (covid-chestxray) or near-duplicate group (covid19-radiography).""",
    traps=(
        "CONFOUNDER: nearly all normals come from another collection (covid19-radiography) than every "
        "pneumonia image (covid-chestxray): normal against pneumonia can be learned as source against source. "
        "The COVID-19 against other-pneumonia contrast within covid-chestxray has no such confounder: report it.",
        "Other pneumonias are few (about a hundred images): their figures have wide intervals.",
        "covid-chestxray images come from papers and websites: sizes, crops and annotations vary.",
    ),
)
def load_cxr_adult_3class(folder: Path) -> SampleTable:
    cohen = load_covid_chestxray(folder / "covid-chestxray")
    radiography = load_covid19_radiography(folder / "covid19-radiography")
    kept = []
    for s in cohen.samples:
        finding = s.meta.get("finding", "")
        label = 2 if "COVID-19" in finding else 0 if finding == "No Finding" else 1
        kept.append((s, label))
    groups = [f"cohen:{s.group}" for s, _ in kept]
    splits = group_split(groups, [label for _, label in kept], seed=SPLIT_SEED)
    samples = [
        dataclasses.replace(s, label=label, split=split, group=group, meta={**s.meta, "source": "covid-chestxray"})
        for (s, label), split, group in zip(kept, splits, groups)
    ]
    normal = radiography.classes.index("Normal")
    samples += [
        dataclasses.replace(s, label=0, group=f"radiography:{s.group}", meta={"source": "covid19-radiography"})
        for s in radiography.samples if s.label == normal
    ]
    return SampleTable(
        "cxr-adult-3class", list(ADULT_3CLASS), samples, positive_class="COVID-19", modality="cxr",
        group_kind="patient",
    )
