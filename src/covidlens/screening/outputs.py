"""What a screened study leaves on disk, in formats hospital systems and people read.

One folder per study: ``result.json`` (everything measured, the verdict and its rule), ``report.html``
(key slices with lesion, lung and heat overlays, the numbers, what was not done, and the caution),
``strip.png`` for a volume (lesion area and P(COVID) slice by slice), the masks as NIfTI carrying the
scan's affine (``lesions.nii.gz``, ``lungs.nii.gz``) and, for DICOM input, a DICOM SEG of lesions and
lungs referencing the source images and a DICOM SR measurement report (TID 1500). A folder is written
whole into a hidden temporary folder and renamed into place, so a study folder is complete or absent.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

import covidlens
from covidlens.evaluation.metrics import json_safe
from covidlens.data.scan import Scan
from covidlens.visualize.overlay import draw_outline, heat_overlay, mask_overlay, png_bytes

RESULT = "result.json"
#: Written into every result so that a folder can be recognised as ours (resume, overwrite checks).
TOOL = "covidlens screen"
CAUTION = ("covidlens is a research screening aid, not a diagnosis: every result needs a radiologist's reading. "
           "Its models were trained on public research sets and have not been validated for clinical use.")
LUNG_COLOUR = (40, 220, 80)


def partial_folder(out_dir: Path, name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out_dir))


def write_study(folder: Path, record: dict, scan: Scan | None, evidence) -> list[str]:
    """Every file of one screened study into ``folder`` (a fresh temporary folder); returns their names."""
    written = []
    if evidence is not None:
        written += _pictures(folder, evidence)
        if scan is not None and evidence.modality == "ct" and evidence.lesion is not None:
            written += _nifti(folder, scan, evidence)
            if scan.format in ("dicom-series", "dicom") and evidence.kind != "picture":
                written += _dicom(folder, scan, evidence, record)
    record["outputs"] = sorted(written + [RESULT, "report.html"])
    record.update(json_safe(record))  # an undefined figure (NaN) is null in result.json, never a crash
    (folder / RESULT).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    (folder / "report.html").write_text(report_html(record))
    return record["outputs"]


def move_into_place(tmp: Path, target: Path) -> None:
    """Rename a finished temporary folder to ``target``, replacing a previous one only if asked to."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(old / "previous")
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


def key_slice_pictures(evidence, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Slice ``k`` of a study as a report shows it: lesions tinted, the lung outlined (RGB), and the
    classifier's heat map over it (RGB, None where none was computed)."""
    grey = evidence.grey[k]
    lesion = evidence.lesion[k] if evidence.lesion is not None else np.zeros(grey.shape, bool)
    rgb = mask_overlay(grey, lesion.astype(np.uint8))
    if evidence.lung is not None:
        draw_outline(rgb, evidence.lung[k], LUNG_COLOUR)
    return rgb, heat_overlay(grey, evidence.heat[k]) if k in evidence.heat else None


def _pictures(folder: Path, evidence) -> list[str]:
    out = []
    (folder / "slices").mkdir()
    for k in evidence.key_slices:
        lesions, heat = key_slice_pictures(evidence, k)
        name = f"slices/slice_{k:04d}_lesions.png"
        (folder / name).write_bytes(png_bytes(lesions))
        out.append(name)
        if heat is not None:
            name = f"slices/slice_{k:04d}_heat.png"
            (folder / name).write_bytes(png_bytes(heat))
            out.append(name)
    if evidence.kind == "volume":
        out.append(_strip(folder, evidence))
    return out


def _strip(folder: Path, evidence) -> str:
    """Lesion area and the classifier's P(COVID) along the volume, key slices marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    index = np.arange(len(evidence.slices))
    lesion = np.array([s.get("lesion_mm2", s.get("lesion_px", 0)) or 0 for s in evidence.slices], dtype=float)
    unit = "mm²" if any("lesion_mm2" in s for s in evidence.slices) else "pixels"
    fig, ax = plt.subplots(figsize=(9, 2.6), dpi=100)
    ax.bar(index, lesion, width=1.0, color="#d33", label=f"lesion area ({unit})")
    ax.set_xlabel("slice (head to feet)")
    ax.set_ylabel(f"lesion ({unit})")
    for k in evidence.key_slices:
        ax.axvline(k, color="#888", lw=0.6, ls=":")
    scores = [s.get("p_covid") for s in evidence.slices]
    if any(v is not None for v in scores):
        twin = ax.twinx()
        twin.plot(index, [np.nan if v is None else v for v in scores], color="#36c", lw=1, label="classifier P(COVID)")
        twin.set_ylim(0, 1)
        twin.set_ylabel("P(COVID)")
    ax.set_title("Lesion area per slice (red); the CT classifier's P(COVID) (blue); key slices dotted", fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "strip.png")
    plt.close(fig)
    return "strip.png"


def _nifti(folder: Path, scan: Scan, evidence) -> list[str]:
    import nibabel

    from covidlens.data.io import source_layout

    out = []
    for name, mask in (("lesions.nii.gz", evidence.lesion), ("lungs.nii.gz", evidence.lung)):
        if mask is None:
            continue
        if scan.ndim == 3:
            data, affine = source_layout(scan, mask.astype(np.uint8)), scan.affine
        else:
            data = np.ascontiguousarray(mask[0].astype(np.uint8).T[..., None])
            row, col = scan.spacing if scan.spacing else (1.0, 1.0)
            affine = np.diag([-col, -row, 1.0, 1.0])
        image = nibabel.Nifti1Image(data, affine if affine is not None else np.eye(4))
        image.header.set_xyzt_units("mm")
        nibabel.save(image, str(folder / name))
        out.append(name)
    return out


def _dicom(folder: Path, scan: Scan, evidence, record: dict) -> list[str]:
    from covidlens.screening.dicom_out import write_seg, write_sr

    sources = list(scan.files) if scan.files else [scan.path]
    version = covidlens.__version__
    m = record["measures"]
    measures = {"lesion_volume_ml": m.get("lesion_volume_ml"), "lung_volume_ml": m.get("lung_volume_ml"),
                "percent_involved": m.get("percent_involved"), "severity": record["verdict"]["severity"]}
    with warnings.catch_warnings():
        # highdicom warns about the source's own header style (a one-part patient name): not ours to fix.
        warnings.simplefilter("ignore", UserWarning)
        write_seg(sources, evidence.lesion, evidence.lung, folder / "seg.dcm", algorithm="covidlens", version=version)
        if all(value is None for value in measures.values()):
            return ["seg.dcm"]  # a slice without lung measures nothing, and an SR needs one measure
        write_sr(sources, measures, folder / "sr.dcm", algorithm="covidlens", version=version, seg_path=folder / "seg.dcm")
    return ["seg.dcm", "sr.dcm"]


# --- HTML ----------------------------------------------------------------------------------------

_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em;max-width:70em;color:#222}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
          ".verdict{font-size:1.3em;padding:.6em;border-radius:.3em;background:#f4f4f4}"
          ".yes{background:#fde2e2}.no{background:#e3f5e3}.caution{color:#a40;font-size:.9em}"
          "figure{display:inline-block;margin:.3em}figure img{max-width:256px}figcaption{font-size:.8em}")


def report_html(record: dict) -> str:
    """A self-contained page for one study (images are the files beside it)."""
    e = html.escape
    title = f"covidlens screen: {record['study']['key']}"
    parts = [f"<!doctype html><meta charset='utf-8'><title>{e(title)}</title><style>{_STYLE}</style><h1>{e(title)}</h1>"]
    if record["status"] != "screened":
        parts.append(f"<p class='verdict'>Not screened: {e(record['error'])}</p>")
    else:
        v = record["verdict"]
        css = {"yes": "yes", "no": "no"}.get(v["lesions"], "")
        score = "n/a" if v["covid19_score"] is None else f"{v['covid19_score']:.3f}"
        parts.append(f"<p class='verdict {css}'><b>{e(v['decision'])}</b><br>pneumonia-pattern lesions: {e(v['lesions'])}"
                     f"; severity: {e(v['severity'] or 'n/a')}; COVID-19 score: {score}; operating point: "
                     f"{e(v['operating_point'])}</p>")
        parts.append("<h2>Why</h2><ul>" + "".join(f"<li>{e(line)}</li>" for line in v["rule"]) + "</ul>")
        parts.append(f"<p>Modality: {e(record['modality_statement'])}</p>")
        parts.append("<h2>Measures</h2><table>" + "".join(
            f"<tr><th>{e(k)}</th><td>{e(str(val))}</td></tr>" for k, val in record["measures"].items()) + "</table>")
        figures = [name for name in record["outputs"] if name.startswith("slices/")]
        if figures:
            parts.append("<h2>Key slices</h2><p>Lesions tinted red, lung outlined green; heat maps of the classifier "
                         "(Grad-CAM, red strongest).</p>")
            parts += [f"<figure><img src='{e(n)}' alt='{e(n)}'><figcaption>{e(Path(n).stem)}</figcaption></figure>"
                      for n in figures]
        if "strip.png" in record["outputs"]:
            parts.append("<h2>Slice by slice</h2><img src='strip.png' alt='lesion area per slice' style='max-width:100%'>")
        lost = record.get("missing", []) + record.get("notes", [])
        if lost:
            parts.append("<h2>Not done, and why</h2><ul>" + "".join(f"<li>{e(line)}</li>" for line in lost) + "</ul>")
        parts.append("<h2>Models</h2><table>" + "".join(
            f"<tr><th>{e(role)}</th><td>{e(m['architecture'])} on {e(m['dataset'] or '?')} ({e(m['path'])}, "
            f"{e(m['engine'])})</td></tr>" for role, m in record["models"].items()) + "</table>")
        files = [n for n in record["outputs"] if not n.startswith("slices/")]
        parts.append("<p>Files: " + ", ".join(f"<a href='{e(n)}'>{e(n)}</a>" for n in files) + "</p>")
    parts.append(f"<p class='caution'>{e(CAUTION)}</p>")
    return "\n".join(parts) + "\n"


def index_html(rows: list[dict], title: str = "covidlens screen", models: list[dict] = ()) -> str:
    """One page linking every study's report, with its verdict, and the models used, each with a link
    to its card where it has one (``models``: ``{role, architecture, path, card}``, card an href or "")."""
    e = html.escape
    head = ("<tr><th>study</th><th>modality</th><th>decision</th><th>lesions</th><th>severity</th>"
            "<th>COVID-19 score</th><th>problem</th></tr>")
    body = []
    for r in rows:
        link = f"<a href='{e(r['name'])}/report.html'>{e(r['key'])}</a>" if r["status"] == "screened" else e(r["key"])
        body.append(f"<tr><td>{link}</td><td>{e(r.get('modality') or '')}</td><td>{e(r.get('decision') or '')}</td>"
                    f"<td>{e(r.get('lesions') or '')}</td><td>{e(r.get('severity') or '')}</td>"
                    f"<td>{e('' if r.get('covid19_score') is None else format(r['covid19_score'], '.3f'))}</td>"
                    f"<td>{e(r.get('error') or '')}</td></tr>")
    used = ""
    if models:
        used = "<h2>Models</h2><table>" + "".join(
            f"<tr><th>{e(m['role'])}</th><td>{e(m['architecture'])} ({e(m['path'])})</td><td>"
            + (f"<a href='{e(m['card'])}'>model card</a>" if m.get("card") else "no model card (not a store model)")
            + "</td></tr>" for m in models) + "</table>"
    return (f"<!doctype html><meta charset='utf-8'><title>{e(title)}</title><style>{_STYLE}</style>"
            f"<h1>{e(title)}</h1><p>{len(rows)} studies.</p><table>{head}{''.join(body)}</table>{used}"
            f"<p class='caution'>{e(CAUTION)}</p>\n")
