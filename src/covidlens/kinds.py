"""The closed sets of names covidlens checks values against: what a model does, which images it
reads, and the splits of a data set. One definition each, used by the model registry, checkpoints,
training configs, the data set registry and the CLI's choices.
"""

#: What a model's outputs mean.
TASKS = ("classification", "segmentation")
#: Image modalities: computed tomography slices and volumes, and chest radiographs.
MODALITIES = ("ct", "cxr")
#: The splits of a data set, in the order they are used.
SPLITS = ("train", "val", "test")
