"""The model store: named, ready-to-use checkpoints under ``$COVIDLENS_HOME/models/NAME/``.

Each installed model is a folder holding a checkpoint (``model.safetensors`` + ``model.json``, read
with :func:`covidlens.checkpoint.load_checkpoint` and its strict checks) and its card (``card.md``,
``card.json``). A folder appears in the store only whole: it is written beside the store and renamed
into place once its checkpoint loads, so a failed pull or build never leaves half a model behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from covidlens.errors import CovidlensError

# The checkpoint's file names, repeated so that the CLI's parser can import the store without torch.
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"
CARD_JSON = "card.json"
CARD_MD = "card.md"


@dataclass(frozen=True)
class Role:
    """What a named model is for: the task and modality its checkpoint must declare."""

    name: str
    task: str
    modality: str
    description: str


#: The named models, in the order ``covidlens models list`` shows them.
ROLES = {
    r.name: r
    for r in (
        Role("ct-lesions", "segmentation", "ct", "lesion (infection) masks on CT slices"),
        Role("ct-classifier", "classification", "ct", "COVID vs non-COVID on a CT slice"),
        Role("cxr-lungs", "segmentation", "cxr", "lung masks on chest X-rays (stage 1)"),
        Role("cxr-classifier", "classification", "cxr", "COVID vs normal on a lung-masked chest X-ray (stage 2)"),
        Role("modality", "classification", "ct", "chest CT slice, chest X-ray or neither"),
    )
}
NAMES = tuple(ROLES)


def store_root() -> Path:
    """``$COVIDLENS_HOME/models``, by default ``~/.cache/covidlens/models``."""
    home = os.environ.get("COVIDLENS_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "covidlens"
    return base / "models"


def check_name(name: str) -> str:
    if name not in ROLES:
        raise CovidlensError(f"{name!r} is not a store model; the store holds {', '.join(NAMES)}.")
    return name


def model_dir(name: str) -> Path:
    return store_root() / check_name(name)


def is_installed(name: str) -> bool:
    folder = model_dir(name)
    return (folder / WEIGHTS_NAME).is_file() and (folder / META_NAME).is_file()


def not_installed_message(name: str) -> str:
    return (f"no {name} model is installed: run 'covidlens models build {name}' "
            f"or 'covidlens models pull {name}'")


def installed_checkpoint(name: str) -> Path:
    """The checkpoint folder of an installed model, or one sentence saying how to get it."""
    if not is_installed(name):
        raise CovidlensError(not_installed_message(name) + ".")
    return model_dir(name)


def verify_model(name: str, folder: Path) -> None:
    """Load the checkpoint with its strict checks and make sure it is the kind of model ``name`` is."""
    from covidlens.checkpoint import load_checkpoint, read_info

    if name == "modality":
        # Not a registry architecture: its model.json passes the same strict checks, and its weights must
        # be exactly the modality CNN's tensors.
        from covidlens.modality.check import KINDS, read_modality_net

        info = read_info(folder / META_NAME)
        if info.classes != list(KINDS):
            raise CovidlensError(f"the modality model must have the classes {', '.join(KINDS)}, but this one has "
                                 f"{', '.join(info.classes)}.")
        read_modality_net(folder / WEIGHTS_NAME)
        return
    ckpt = load_checkpoint(folder)
    role = ROLES[name]
    if (ckpt.info.task, ckpt.info.modality) != (role.task, role.modality):
        raise CovidlensError(
            f"the {name} model must be a {role.modality} {role.task} model, but this one is a "
            f"{ckpt.info.modality} {ckpt.info.task} model."
        )


@contextmanager
def staging(name: str):
    """A scratch folder beside the store (same file system, so installing is one rename), always removed."""
    root = store_root()
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def install(name: str, folder: Path, scratch: Path) -> Path:
    """Move a verified model folder (inside ``scratch``) into the store, replacing any installed one."""
    verify_model(name, folder)
    target = model_dir(name)
    if target.exists():
        os.replace(target, scratch / "replaced")
    os.replace(folder, target)
    return target


@dataclass(frozen=True)
class StoreEntry:
    name: str
    installed: bool
    architecture: str = ""
    dataset: str = ""
    built: str = ""
    card: Path | None = None


def store_entries() -> list[StoreEntry]:
    """Every named model with what its installed checkpoint and card say (blank when not installed)."""
    from covidlens.checkpoint import read_info
    from covidlens.store.cards import read_card

    entries = []
    for name in NAMES:
        if not is_installed(name):
            entries.append(StoreEntry(name, False))
            continue
        folder = model_dir(name)
        try:
            info = read_info(folder / META_NAME)
            architecture, dataset = info.model, info.dataset
        except CovidlensError:
            architecture, dataset = "(unreadable model.json)", ""
        card = read_card(name)
        entries.append(StoreEntry(name, True, architecture, dataset, str(card.get("built", "")) if card else "",
                                  folder / CARD_MD if (folder / CARD_MD).is_file() else None))
    return entries


#: The store model that fills each role of the screen road (``ScreenModels.load``'s arguments).
SCREEN_ROLES = {"lesion": "ct-lesions", "ct": "ct-classifier", "cxr_lungs": "cxr-lungs", "cxr": "cxr-classifier"}


def installed_screen_models() -> dict[str, str]:
    """Checkpoint folders of the installed store models for each screen role (roles without one are left out)."""
    found = {role: str(model_dir(name)) for role, name in SCREEN_ROLES.items() if is_installed(name)}
    if not found:
        raise CovidlensError(f"no model given and the store ({store_root()}) holds none: pass --lesion-checkpoint "
                             "(and/or classifiers), or run 'covidlens models build --all' or 'covidlens models pull "
                             "ct-lesions'.")
    return found


def store_name_of(folder: str | Path | None) -> str | None:
    """The store name whose installed folder ``folder`` is (None for a checkpoint outside the store)."""
    if folder is None:
        return None
    try:
        resolved = Path(folder).resolve()
    except (OSError, RuntimeError):
        return None
    if resolved.is_file():
        resolved = resolved.parent
    for name in NAMES:
        if is_installed(name) and model_dir(name).resolve() == resolved:
            return name
    return None


def card_of(folder: str | Path | None) -> tuple[str, Path] | None:
    """(store name, card.md) of a checkpoint folder that is an installed store model with a card."""
    name = store_name_of(folder)
    if name is None or not (model_dir(name) / CARD_MD).is_file():
        return None
    return name, model_dir(name) / CARD_MD
