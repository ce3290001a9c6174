"""Data sets as tables of samples: the public face of :mod:`covidlens.data.sets`.

The registry, the loaders and their traps live in that package (one module per modality); this module
keeps the import path every caller uses.
"""

from covidlens.data.sets import (
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
    load_covid_ct,
    load_csv,
    load_dataset,
    load_folder,
    register_dataset,
)

__all__ = [
    "DATA_ROOT_ENV", "GROUP_KINDS", "SPLITS", "DatasetInfo", "Sample", "SampleTable", "dataset_folder",
    "default_data_root", "describe_dataset", "group_split", "is_covid_class", "list_datasets", "load_covid_ct",
    "load_csv", "load_dataset", "load_folder", "register_dataset",
]
