"""The data-set registry: every set under the data root with its layout, labels, groups and traps.

Importing this package registers the CT sets (:mod:`.ct`) and the chest X-ray sets (:mod:`.cxr`).
"""

from covidlens.data.sets import ct, cxr  # noqa: F401  (registers the sets)
from covidlens.data.sets.core import (
    DATA_ROOT_ENV,
    GROUP_KINDS,
    SPLITS,
    DatasetInfo,
    Sample,
    SampleTable,
    dataset_folder,
    default_data_root,
    describe_dataset,
    group_split,
    is_covid_class,
    list_datasets,
    load_csv,
    load_dataset,
    load_folder,
    register_dataset,
)
from covidlens.data.sets.ct import load_covid_ct

__all__ = [
    "DATA_ROOT_ENV", "GROUP_KINDS", "SPLITS", "DatasetInfo", "Sample", "SampleTable", "dataset_folder",
    "default_data_root", "describe_dataset", "group_split", "is_covid_class", "list_datasets", "load_covid_ct",
    "load_csv", "load_dataset", "load_folder", "register_dataset",
]
