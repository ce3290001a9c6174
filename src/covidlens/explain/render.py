"""Pictures of explanations a clinician can read: original, heat map and overlay side by side,
and one scrollable HTML page for a folder of them."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from covidlens.explain.cam import Explanation  # noqa: E402
from covidlens.visualize import heat_overlay  # noqa: E402

METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "cam": "CAM"}


def render_panel(explanation: Explanation, path: Path, source: str = "") -> Path:
    grey = np.asarray(explanation.image, dtype=np.float32) / 255.0
    e = explanation
    fig, axes = plt.subplots(1, 3, figsize=(11, 4), dpi=110)
    axes[0].imshow(grey, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("image")
    shown = axes[1].imshow(e.heat, cmap="jet", vmin=0, vmax=1)
    axes[1].set_title(f"{METHOD_TITLES[e.method]} for {e.explained_class}")
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(heat_overlay(np.asarray(e.image), e.heat))
    axes[2].set_title("overlay")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(
        f"predicted {e.predicted_class}; P({e.explained_class}) = {e.probability:.3f}   "
        f"[{source}, layer {e.layer}]",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_gallery(entries: list[tuple[str, str, Explanation]], path: Path, title: str) -> Path:
    """``entries`` are (image file name shown, PNG path relative to the page, explanation)."""
    rows = []
    for name, png, e in entries:
        rows.append(
            f"<figure><img src='{html.escape(png)}' loading='lazy' alt='{html.escape(name)}'>"
            f"<figcaption>{html.escape(name)}: predicted <b>{html.escape(e.predicted_class)}</b>, "
            f"P({html.escape(e.explained_class)}) = {e.probability:.3f}</figcaption></figure>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em;background:#111;color:#eee}}"
        "figure{margin:0 0 2em 0}img{max-width:100%;background:#fff}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Heat maps show where the evidence for the named class lies; "
        "they are a research aid, not a diagnosis.</p>" + "".join(rows) + "</body></html>"
    )
    path.write_text(page)
    return path


def explain_files(
    ckpt,
    paths: list[str | Path],
    out_dir: str | Path,
    method: str = "gradcam",
    target_layer: str | None = None,
    target_class: str | None = None,
    save_npy: bool = False,
    check_modality: bool = True,
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Explain every image under ``paths`` into ``out_dir``; returns (written, failed).

    A run over a folder or several files also writes ``index.html``, a gallery of all panels.
    Unreadable files are listed in ``failed`` with the reason and do not stop the run; so are images
    the modality check (:mod:`covidlens.modality`) finds are not what the model reads (a chest X-ray
    given to a CT model, a blank or noise image), unless ``check_modality`` is False.
    """
    from covidlens.modality import check_modality as modality_of
    from covidlens.modality import mismatch_message
    from covidlens.data.io import list_images, read_image
    from covidlens.errors import CovidlensError
    from covidlens.explain.cam import explain_image, resolve_class, resolve_layer
    from covidlens.models import get_model_spec

    # Settings are checked once, before any image: a wrong class or layer is the user's one error.
    if target_class is not None:
        resolve_class(ckpt.info, target_class)
    resolve_layer(ckpt.model, target_layer or get_model_spec(ckpt.info.model).target_layer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [f for p in paths for f in list_images(p)]
    written, failed, entries, used = [], [], [], set()
    tag = method.replace("++", "pp")
    for file in files:
        try:
            image = read_image(file)
            refusal = mismatch_message(modality_of(file), ckpt.info.modality) if check_modality else None
        except CovidlensError as exc:
            failed.append((file, str(exc)))
            continue
        if refusal:
            failed.append((file, refusal))
            continue
        e = explain_image(ckpt, image, method, target_layer, target_class)
        stem = file.stem
        while stem in used:  # same file name in two folders
            stem += "_"
        used.add(stem)
        png = render_panel(e, out_dir / f"{stem}_{tag}.png", source=file.name)
        if save_npy:
            np.save(out_dir / f"{stem}_{tag}.npy", e.heat)
        written.append((file, png))
        entries.append((str(file), png.name, e))
    if written and (len(files) > 1 or any(Path(p).is_dir() for p in paths)):
        write_gallery(entries, out_dir / "index.html", f"covidlens {METHOD_TITLES[method]} explanations")
    return written, failed
