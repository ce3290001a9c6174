"""Measure lungs and lesions on CT: a classical lung mask in Hounsfield units, and areas, volumes,
percent of lung involved and the MosMedData severity class from masks and voxel spacing."""

from covidlens.measure.lungs import (
    GAS_QUARTILE_HU,
    LUNG_THRESHOLD_HU,
    segment_lungs_cropped,
    segment_lungs_grey,
    segment_lungs_hu,
)
from covidlens.measure.volumes import (
    SEVERITY_CLASSES,
    Quantity,
    lesion_volume_ml,
    mask_area_mm2,
    measure_areas,
    measure_volume,
    per_slice_areas_mm2,
    percent_involved,
    pixel_area_mm2,
    restrict_to_lung,
    severity_class,
    voxel_volume_mm3,
)

__all__ = [
    "GAS_QUARTILE_HU",
    "LUNG_THRESHOLD_HU",
    "SEVERITY_CLASSES",
    "Quantity",
    "lesion_volume_ml",
    "mask_area_mm2",
    "measure_areas",
    "measure_volume",
    "per_slice_areas_mm2",
    "percent_involved",
    "pixel_area_mm2",
    "restrict_to_lung",
    "segment_lungs_cropped",
    "segment_lungs_grey",
    "segment_lungs_hu",
    "severity_class",
    "voxel_volume_mm3",
]
