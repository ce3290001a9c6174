"""Ready-to-use named models: a store of checkpoints with generated model cards, packed as archives
with SHA-256 digests and pulled with the digest checked before anything is unpacked."""

from covidlens.store.archive import pack_folder, pack_model, unpack_archive
from covidlens.store.cards import read_card, render_card, write_card
from covidlens.store.manifest import read_manifest, pull
from covidlens.store.store import (NAMES, ROLES, installed_checkpoint, is_installed, model_dir,
                                   not_installed_message, store_entries, store_root)

__all__ = ["NAMES", "ROLES", "installed_checkpoint", "is_installed", "model_dir", "not_installed_message",
           "pack_folder", "pack_model", "pull", "read_card", "read_manifest", "render_card", "store_entries", "store_root",
           "unpack_archive", "write_card"]
