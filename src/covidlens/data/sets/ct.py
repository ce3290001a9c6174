"""The registered CT sets: their folder layouts, labels, groups, geometry and traps.

Loaders read file names and tables only (headers for NIfTI and DICOM geometry), never pixels: tests and
the CLI load them often.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from covidlens.data.sets.core import SPLITS, Sample, SampleTable, read_csv_rows, register_dataset
from covidlens.errors import CovidlensError


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise CovidlensError(f"split file {path} is missing; the data set folder is incomplete.")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _figure_group(file_name: str) -> str:
    """'12%0.jpg' and '12%1.jpg' are crops of one figure: both map to '12'."""
    return re.sub(r"%\d+$", "", Path(file_name).stem)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise CovidlensError(f"{path} ({what}) is missing; the data set folder is incomplete.")
    return path


@register_dataset(
    "covid-ct",
    "ct/covid-ct",
    modality="ct",
    task="classification",
    description="""COVID-CT (Zhao et al. 2020): CT_COVID/ 349 and CT_NonCOVID/ 397 2-D CT slices cropped from
    paper figures, with the official split in splits/{COVID,NonCOVID}/{train,val,test}CT_*.txt
    (425/118/203) and COVID patient ids in meta/covid_patient_split_map.csv. Classes NonCOVID, COVID
    (positive). Group: the patient id for COVID images, the source figure ('12%0.jpg' -> '12') for NonCOVID.""",
    traps=(
        "Figures from papers: 8-bit, no Hounsfield units, some with arrows or annotations, sizes 115 px to 512 px.",
        "34 COVID files named .png are JPEG inside; modes vary (L, RGB).",
        "NonCOVID has no patient ids: crops of one figure ('12%0', '12%1') must stay on one side of any own split.",
    ),
)
def load_covid_ct(folder: Path) -> SampleTable:
    """COVID-CT with its official split; the COVID split is patient-disjoint (128/32/53 patients).

    The patient map is not part of the authors' download: without it COVID images, too, are grouped
    by source figure (``group_kind`` then says "figure").
    """
    map_file = folder / "meta" / "covid_patient_split_map.csv"
    patients = {row["file"]: row["patient_id"] for row in read_csv_rows(map_file)} if map_file.is_file() else {}
    samples = []
    for label, cls in enumerate(("NonCOVID", "COVID")):
        for split in SPLITS:
            for name in _read_lines(folder / "splits" / cls / f"{split}CT_{cls}.txt"):
                path = folder / f"CT_{cls}" / name
                if not path.is_file():
                    raise CovidlensError(f"{path} is listed in the official split but missing.")
                group = patients.get(name) or f"{cls}:{_figure_group(name)}"
                samples.append(Sample(path, label, split, group))
    return SampleTable(
        "covid-ct", ["NonCOVID", "COVID"], samples, positive_class="COVID", modality="ct",
        group_kind="patient+figure" if patients else "figure",
    )


_MEDSEG_LAYOUT = """MedSeg COVID-19 CT slices as Inf-Net repackaged them: train/images 50 and test/images 48 grey
    JPEG axial slices cropped to the lungs, with */infection/ binary masks (PNG 0/255) and */multiclass/
    palette masks (0 background, 1 ground-glass opacity, 2 consolidation), one per image, same name. Inf-Net's
    split (no val). No image-level label (label -1); no patient ids, so each slice is its own group."""
_MEDSEG_TRAPS = (
    "Stored turned 90 degrees (anterior at the left): every sample has rot90 = -1; turn image AND mask together.",
    "No patient ids: slices of one patient may sit in both train and test (Inf-Net's split); group = image.",
    "No Hounsfield units (JPEG); some slices have no lesion at all.",
    "Non-commercial use only.",
)


def _medseg(folder: Path, name: str, mask_dir: str, mask_classes: list[str]) -> SampleTable:
    samples = []
    for split in ("train", "test"):
        images = sorted(_need(folder / split / "images", "MedSeg images").glob("*.jpg"))
        for path in images:
            mask = _need(folder / split / mask_dir / f"{path.stem}.png", "MedSeg mask")
            samples.append(Sample(path, -1, split, f"{split}/{path.stem}", mask=mask, rot90=-1))
    return SampleTable(
        name, [], samples, task="segmentation", modality="ct", group_kind="image", mask_classes=mask_classes
    )


@register_dataset(
    "medseg-infnet",
    "ct/medseg-infnet",
    modality="ct",
    task="segmentation",
    description=_MEDSEG_LAYOUT + " This name gives the binary infection masks (mask classes background, infection).",
    traps=_MEDSEG_TRAPS + ("Masks are stored 0/255: threshold at 127 to get classes 0/1.",),
)
def load_medseg_infnet(folder: Path) -> SampleTable:
    return _medseg(folder, "medseg-infnet", "infection", ["background", "infection"])


@register_dataset(
    "medseg-infnet-multiclass",
    "ct/medseg-infnet",
    modality="ct",
    task="segmentation",
    description=_MEDSEG_LAYOUT + " This name gives the palette masks (mask classes background, ground-glass, "
    "consolidation); the slices, split and groups are those of medseg-infnet.",
    traps=_MEDSEG_TRAPS + ("Palette PNG: read the palette indices (0, 1, 2), not the RGB colours.",),
)
def load_medseg_infnet_multiclass(folder: Path) -> SampleTable:
    return _medseg(folder, "medseg-infnet-multiclass", "multiclass", ["background", "ground-glass", "consolidation"])


MOSMED_CLASSES = ["CT-0", "CT-1", "CT-2", "CT-3", "CT-4"]


@register_dataset(
    "mosmed-masks",
    "ct/mosmed-masks",
    modality="ct",
    task="segmentation",
    description="""MosMedData lesion masks (Morozov et al. 2020): masks/study_NNNN_mask.nii.gz, 50 3-D masks
    (values 0/1, 512x512x33..53) of studies 255..304, and dataset_registry.csv (study_id, category,
    study_file, mask_file) with the CT-0..CT-4 severity class of 1110 studies. One sample per mask: path
    and mask are both the mask file (the CT volumes are not in this copy), label = the study's class,
    spacing (slice, row, col) in mm from the NIfTI header, group = series = the study. All in 'test'.""",
    traps=(
        "Masks only, no CT volumes: for lesion volume and per-slice area arithmetic, not for training a model.",
        "All 50 masked studies are CT-1 (mild): the class column cannot be learned from these.",
        "dataset_registry.csv starts with a UTF-8 byte-order mark.",
        "Licence CC BY-NC-ND 3.0.",
    ),
)
def load_mosmed_masks(folder: Path) -> SampleTable:
    """Mask geometry comes from the header alone: nibabel reads voxel data only when asked for it."""
    import nibabel

    samples = []
    for row in read_csv_rows(folder / "dataset_registry.csv"):
        if not row.get("mask_file"):
            continue
        path = _need(folder / row["mask_file"].lstrip("/"), "MosMed mask")
        header = nibabel.load(path).header
        x, y, z = (round(float(v), 6) for v in header.get_zooms()[:3])  # float32 in the header
        study = f"study_{int(row['study_id']):04d}"
        shape = "x".join(str(n) for n in header.get_data_shape())
        samples.append(
            Sample(
                path, MOSMED_CLASSES.index(row["category"]), "test", study, mask=path, spacing=(z, y, x),
                series=study, meta={"category": row["category"], "shape": shape},
            )
        )
    return SampleTable(
        "mosmed-masks", list(MOSMED_CLASSES), samples, task="segmentation", modality="ct", group_kind="patient",
        mask_classes=["background", "lesion"],
    )


#: Seen by eye (data README): slices that do not show the lungs, keyed by file without '.dcm'.
NY_SBU_ABDOMEN = frozenset({
    "A027284/axial/19000925-116", "A027284/axial/19001231-131", "A058062/axial/19001231-084",
    "A058062/axial/19010108-078", "A062055/axial/19001127-136", "A062055/axial/19001228-131",
})
NY_SBU_LUNG_BASE = frozenset({"A067967/axial/19001006-028", "A067967/axial/19001231-270"})


@register_dataset(
    "ny-sbu-dicom",
    "ct/ny-sbu-dicom",
    modality="ct",
    task="classification",
    description="""TCIA COVID-19-NY-SBU: 20 single axial CT DICOM slices, <patient>/axial/<date>-<n>.dcm, of 10
    COVID-19 patients with 2 studies each, indexed by slices_index.csv (file, patient_id, study_date, series,
    size, pixel_spacing, slice_thickness, HU range, manufacturer). Group = patient, series = patient/study
    date, spacing (row, col) from the index; meta 'region' is lungs, abdomen or lung-base. All in 'test'.""",
    traps=(
        "No slice labels (label -1): the patients had COVID-19, but nobody labelled what each slice shows.",
        "6 slices are abdomen only and 2 are lung bases under the diaphragm (meta region = abdomen / lung-base): "
        "filter on region == 'lungs' before anything lung-related.",
        "Padding value -3024 HU (GE) or -2048 (Toshiba) outside the reconstruction circle.",
        "For reading, HU windowing, spacing and lung segmentation in HU, not for training.",
    ),
)
def load_ny_sbu_dicom(folder: Path) -> SampleTable:
    samples = []
    for row in read_csv_rows(folder / "slices_index.csv"):
        path = _need(folder / row["file"], "NY-SBU slice")
        key = row["file"].removesuffix(".dcm")
        region = "abdomen" if key in NY_SBU_ABDOMEN else "lung-base" if key in NY_SBU_LUNG_BASE else "lungs"
        spacing = tuple(float(v) for v in ast.literal_eval(row["pixel_spacing"]))
        meta = {
            "region": region, "study_date": row["study_date"], "series_description": row["series"],
            "slice_thickness_mm": row["slice_thickness"], "manufacturer": row["manufacturer"],
            "diagnosis": "COVID-19 (patient, not slice)",
        }
        patient = row["patient_id"]
        series = f"{patient}/{row['study_date']}"
        samples.append(Sample(path, -1, "test", patient, spacing=spacing, series=series, meta=meta))
    return SampleTable("ny-sbu-dicom", [], samples, modality="ct", group_kind="patient")


CT_MD_CLASSES = ["not infected", "infected"]
_CT_MD_TRAPS = (
    "3 patients: not for training; for reading, HU, spacing, lesion quantification and a slice-level check.",
    "normal001 was never labelled: its slices are 0 because of the diagnosis (meta label_source = "
    "normal_unlabelled), not because a reader looked at each; P001 and cap001 are 'radiologist'.",
    "Slice k is label index k, k = 0 the most superior slice (the labels run head to feet).",
)


@register_dataset(
    "covid-ct-md",
    "ct/covid-ct-md",
    modality="ct",
    task="classification",
    description="""COVID-CT-MD sample (Afshar et al. 2021): volumes/{P001,cap001,normal001}.nii.gz, int16 HU,
    256x256 x 148/168/154 slices at 2.0 mm, and labels.csv (subject, class, slice, infected, LLL, LUL, RLL,
    RML, RUL, label_source, slice_location_mm). One sample per labelled slice: path = the volume,
    slice_index = k (NIfTI array axis 2), label = infected (classes 'not infected', 'infected'), group =
    series = the subject, spacing (row, col) from the header, meta: scan class (COVID-19, CAP, Normal),
    the five lobe labels and label_source. All in 'test'. P001 80/148 slices infected, cap001 86/168.""",
    traps=_CT_MD_TRAPS,
)
def load_covid_ct_md(folder: Path) -> SampleTable:
    import nibabel

    geometry: dict[str, tuple[tuple[float, float], str]] = {}
    samples = []
    for row in read_csv_rows(folder / "labels.csv"):
        subject = row["subject"]
        if subject not in geometry:
            header = nibabel.load(_need(folder / "volumes" / f"{subject}.nii.gz", "COVID-CT-MD volume")).header
            x, y, z = (round(float(v), 6) for v in header.get_zooms()[:3])
            geometry[subject] = ((y, x), f"{z:g}")
        spacing, step = geometry[subject]
        meta = {k: row[k] for k in ("class", "LLL", "LUL", "RLL", "RML", "RUL", "label_source", "slice_location_mm")}
        meta["slice_step_mm"] = step
        samples.append(
            Sample(
                folder / "volumes" / f"{subject}.nii.gz", int(row["infected"]), "test", subject, spacing=spacing,
                series=subject, slice_index=int(row["slice"]), meta=meta,
            )
        )
    return SampleTable(
        "covid-ct-md", list(CT_MD_CLASSES), samples, positive_class="infected", modality="ct", group_kind="patient"
    )


CT_MD_3CLASS = {"Normal": "normal", "COVID-19": "COVID-19", "CAP": "CAP"}
#: Slices per slab of the 3-class set, and which slabs (by index modulo 5) go to which split.
SLAB_SLICES = 8
_SLAB_SPLITS = ("train", "train", "train", "val", "test")


@register_dataset(
    "covid-ct-md-3class",
    "ct/covid-ct-md",
    modality="ct",
    task="classification",
    description="""COVID-CT-MD as three classes (seed 003's task: COVID-19 / other pneumonia / normal): the
    radiologist-labelled infected slices of P001 (COVID-19, 80) and cap001 (community-acquired pneumonia,
    86) and every slice of normal001 (154). Slices are cut into slabs of 8 adjacent slices (16 mm); slabs
    go to train, train, train, val, test in turn along each scan, and a slab is the resampling group.
    Positive class COVID-19 (its one-vs-rest operating point is reported).""",
    traps=(
        "One patient per class: a model learns which patient a slice comes from as much as which disease, so "
        "its figures on this set show that the 3-class pipeline runs, not that it tells COVID-19 from other "
        "pneumonia. There is no real 3-class CT training set here.",
        "Neighbouring slabs of one scan are nearly the same anatomy: test slabs are not independent of training slabs.",
        *_CT_MD_TRAPS[1:],
    ),
)
def load_covid_ct_md_3class(folder: Path) -> SampleTable:
    classes = list(dict.fromkeys(CT_MD_3CLASS.values()))
    samples = []
    for s in load_covid_ct_md(folder).samples:
        name = CT_MD_3CLASS[s.meta["class"]]
        if name != "normal" and not s.label:
            continue  # an uninfected slice of a patient with pneumonia is neither class
        slab = s.slice_index // SLAB_SLICES
        samples.append(dataclasses.replace(s, label=classes.index(name), split=_SLAB_SPLITS[slab % len(_SLAB_SPLITS)],
                                           group=f"{s.group}/slab{slab:02d}"))
    return SampleTable("covid-ct-md-3class", classes, samples, positive_class="COVID-19", modality="ct",
                       group_kind="slab")


@register_dataset(
    "covid-ct-md-dicom",
    "ct/covid-ct-md",
    modality="ct",
    task="classification",
    description="""COVID-CT-MD, the original DICOM of P001: dicom-series/P001/slice_000..039.dcm (label
    indices 40..79, a contiguous run) with series_labels.csv (file, label_index, infected, lobes,
    original_file). One sample per file, returned in label order (head to feet), label = infected (24 of
    40), group = series = P001, spacing (row, col) from PixelSpacing; meta label_index and the lobe labels.
    All in 'test'.""",
    traps=_CT_MD_TRAPS[:1] + (
        "File order is not slice order: sort by ImagePositionPatient z DESCENDING (or InstanceNumber), "
        "as this loader does via label_index.",
        "JPEG-Lossless pixels: pydicom needs pylibjpeg + pylibjpeg-libjpeg (or gdcm) to decode them.",
    ),
)
def load_covid_ct_md_dicom(folder: Path) -> SampleTable:
    """Only the DICOM headers are read (for the spacing), never the compressed pixels."""
    import pydicom

    series = folder / "dicom-series" / "P001"
    samples = []
    for row in sorted(read_csv_rows(series / "series_labels.csv"), key=lambda r: int(r["label_index"])):
        path = _need(series / row["file"], "COVID-CT-MD DICOM file")
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PixelSpacing"])
        spacing = tuple(float(v) for v in header.PixelSpacing) if "PixelSpacing" in header else None
        meta = {k: row[k] for k in ("label_index", "LLL", "LUL", "RLL", "RML", "RUL", "original_file")}
        meta.update({"class": "COVID-19", "label_source": "radiologist"})
        samples.append(Sample(path, int(row["infected"]), "test", "P001", spacing=spacing, series="P001", meta=meta))
    return SampleTable(
        "covid-ct-md-dicom", list(CT_MD_CLASSES), samples, positive_class="infected", modality="ct",
        group_kind="patient",
    )
