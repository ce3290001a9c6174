"""The study verdict: how the evidence of one study becomes one answer, and why this rule.

What holds on real scans here is the lesion evidence: HU lungs plus the MedSeg lesion model find the
radiologist-labelled infected slices of COVID-CT-MD at AUC 0.95, while the COVID-CT slice classifiers
rank the same slices near chance (docs/results.md sections 5 and 9). So on CT the decision rests on
the lesions, and the classifier's P(COVID) is reported beside it as a second line, never as the
verdict. The lesion model marks ground-glass and consolidation, which COVID-19 shares with other
pneumonias: on CT the decision is "pneumonia-pattern lesions", and no model here tells COVID-19 from
community-acquired pneumonia (one scan of each; the report says so).

The rule, fixed before any study-level table was scored:

- **CT volume** (needs a lesion model and a lung mask): lesions "yes" when the lesion volume inside the
  lungs reaches the floor of the operating point: 20 mL (``default``) or 10 mL (``sensitivity``).
  Why 20 mL: the one normal HU scan here (COVID-CT-MD normal001) carries 13 mL of false-positive lesion
  (section 5), so 20 mL reads it CT-0 with a margin of half as much again; on the 50 real MosMedData
  CT-1 lesion masks (radiologists' masks of mild COVID-19, median 66 mL) 14 % lie below 20 mL and 4 %
  below 10 mL (``python benchmarks/mosmed_volumes.py --out reports/mosmed`` prints these shares).
  The margin is thin: other scanners and patients may carry more false-positive volume.
  Without a pixel spacing the floor is a share of the lung: 0.4 % / 0.2 % (20 and 10 mL of a 5 L lung).
- **Severity**: CT-0 below the floor (empty means empty), else the MosMedData class of the percent of
  lung involved (:func:`covidlens.measure.volumes.severity_class`).
- **One CT slice in HU** (a DICOM slice): lesions "yes" from 100 mm² of lesion inside the slice's lung
  (50 mm² at ``sensitivity``), the slice-level call fixed in section 5 before any scan was scored.
  A slice without lung (an abdomen slice) is "not assessed".
- **One 8-bit CT picture** (PNG/JPEG: no Hounsfield units, no reliable lung mask): the lesion share of
  the body (:mod:`covidlens.measure.evidence`) against floors chosen on COVID-CT's *validation* split by
  :func:`fit_picture_floors`: the share reaching 90 % specificity (``default``) and 95 % sensitivity
  (``sensitivity``); the figures are :data:`PICTURE_FLOORS`. On those 118 validation pictures the
  lesion share separates COVID-19 from the others at AUC 0.45, no better than chance (paper-figure
  crops of every window and size, and non-COVID pictures with other lung disease), so a picture's
  verdict is weak evidence and says so (:data:`PICTURE_CAUTION`).
- **Chest X-ray**: no lesion model exists for radiographs; the decision is the lung-masked
  classifier's P(COVID-19) at the classifier's own operating point (validation-chosen), and the share
  of its heat map inside the lungs is reported as a check that it looked at the lungs.
"""

from __future__ import annotations

from dataclasses import dataclass

from covidlens.errors import CovidlensError
from covidlens.evaluation.operating_points import check_name

#: Lesion volume (mL) from which a CT volume has pneumonia-pattern lesions, per operating point.
VOLUME_FLOOR_ML = {"default": 20.0, "sensitivity": 10.0}
#: The same floor as a percent of the lung, for volumes without a pixel spacing (5 L lung).
VOLUME_FLOOR_PERCENT = {"default": 0.4, "sensitivity": 0.2}
#: Lesion area (mm²) inside the lung from which one HU slice has lesions.
SLICE_FLOOR_MM2 = {"default": 100.0, "sensitivity": 50.0}
#: Lesion share of the body from which one 8-bit CT picture has lesions, chosen on COVID-CT validation
#: by :func:`fit_picture_floors` (90 % specificity; 95 % sensitivity) with the ct-lesions model of
#: docs/results.md section 10: ``python benchmarks/screen_studies.py --fit-floors --lesion-checkpoint ...``.
PICTURE_FLOORS = {"default": 0.1966, "sensitivity": 0.0041}
PICTURE_CAUTION = ("On COVID-CT's validation pictures the lesion share separated COVID-19 from other pictures at AUC "
                   "0.45 (chance): treat a picture's lesion call as weak evidence; a DICOM slice or series in "
                   "Hounsfield units is what the lesion evidence holds on.")

CT_DIFFERENTIAL = ("Ground-glass and consolidation are pneumonia patterns, not COVID-19 alone: covidlens cannot tell "
                   "COVID-19 from other pneumonia on CT with the models and data here.")


@dataclass(frozen=True)
class LesionCall:
    #: "yes", "no" or "not assessed".
    lesions: str
    #: MosMedData class CT-0..CT-4, or None when not assessed (or not a volume).
    severity: str | None
    #: The rule applied, in one sentence with its numbers.
    rule: str


def ct_volume_call(lesion_ml: float | None, percent: float | None, point: str = "default") -> LesionCall:
    """Lesions yes/no and severity of a CT volume from its lesion volume (mL, None without spacing) and
    percent of lung involved (None when no lung was found)."""
    from covidlens.measure.volumes import severity_class

    check_name(point)
    if percent is None:
        return LesionCall("not assessed", None, "No lung was found, so there is no lesion burden to judge.")
    if lesion_ml is not None:
        floor = VOLUME_FLOOR_ML[point]
        present = lesion_ml >= floor
        rule = (f"lesions when at least {floor:g} mL lie inside the lungs ({point} operating point); "
                f"found {lesion_ml:.1f} mL, {percent:.2f} % of the lung")
    else:
        floor = VOLUME_FLOOR_PERCENT[point]
        present = percent >= floor
        rule = (f"lesions when at least {floor:g} % of the lung is involved ({point} operating point; the scan records "
                f"no spacing, so no mL); found {percent:.2f} %")
    return LesionCall("yes" if present else "no", severity_class(percent) if present else "CT-0", rule[0].upper() + rule[1:] + ".")


def ct_slice_call(lesion_mm2: float | None, lung_area: float, point: str = "default") -> LesionCall:
    """Lesions yes/no of one CT slice in HU from the lesion area inside its lung (mm²)."""
    check_name(point)
    if lung_area <= 0:
        return LesionCall("not assessed", None, "The slice shows no lung, so it is not assessed.")
    if lesion_mm2 is None:
        return LesionCall("not assessed", None, "The slice records no pixel spacing, so its lesion area in mm² is unknown.")
    floor = SLICE_FLOOR_MM2[point]
    present = lesion_mm2 >= floor
    return LesionCall("yes" if present else "no", None,
                      f"Lesions when at least {floor:g} mm² of the slice's lung is lesion ({point} operating point); "
                      f"found {lesion_mm2:.0f} mm².")


def picture_call(body_share: float, point: str = "default") -> LesionCall:
    """Lesions yes/no of one 8-bit CT picture from the lesion share of its body."""
    check_name(point)
    floor = PICTURE_FLOORS[point]
    present = body_share >= floor
    return LesionCall("yes" if present else "no", None,
                      f"Lesions when they cover at least {floor:.1%} of the body ({point} operating point, chosen on "
                      f"COVID-CT validation); found {body_share:.1%}. An 8-bit picture has no Hounsfield units, so no "
                      f"lung mask and no volume. {PICTURE_CAUTION}")


def fit_picture_floors(shares, labels) -> dict[str, float]:
    """The two picture floors from lesion shares of validation pictures (labels 1 = COVID-19): the share
    reaching 90 % specificity and the share keeping 95 % sensitivity."""
    from covidlens.evaluation.operating_points import choose_for_sensitivity, choose_for_specificity

    classes = {int(label) for label in labels}
    if len(shares) != len(labels) or classes != {0, 1}:
        raise CovidlensError("fitting the picture floors needs one label per share and at least one of each class.")
    return {"default": choose_for_specificity(labels, shares, 0.90),
            "sensitivity": choose_for_sensitivity(labels, shares, 0.95)}
