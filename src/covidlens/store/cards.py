"""Model cards: ``card.json`` holds what a build measured, ``card.md`` is the same written for a person.

A card is generated, never hand-written: :mod:`covidlens.store.build` fills it from the recipe, the
machine, the training time and the evaluation figures, and :func:`render_card` turns it into Markdown.
Fields (all optional but ``name``): ``summary``, ``built``, ``architecture``, ``task``, ``modality``,
``classes``, ``data`` (mapping), ``recipe`` (mapping), ``training`` (mapping: minutes, machine),
``internal_test`` (``source``, ``n``, ``metrics`` of ``{value, low, high}``), ``calibration`` (the same
shape: ECE and Brier before and after temperature scaling), ``outside`` (a list of the same), ``not_scored`` (outside sources without figures, and why), ``operating_points``,
``intended_use``, ``failure_modes`` (list), ``caution``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from covidlens.store.store import CARD_JSON, CARD_MD, model_dir

CAUTION = ("Research software, not a medical device: do not use it for diagnosis. Figures are measured on "
           "public benchmark images and do not predict performance on your scanner or population.")


def read_card(name: str) -> dict[str, Any] | None:
    """The card.json of an installed model, or None when it has none (or an unreadable one)."""
    path = model_dir(name) / CARD_JSON
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def write_card(folder: Path, card: dict[str, Any]) -> None:
    card = {**card, "caution": card.get("caution") or CAUTION}
    (folder / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    (folder / CARD_MD).write_text(render_card(card))


def _figure(metric: dict[str, Any]) -> str:
    value = metric.get("value")
    if value is None:
        return "n/a"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if metric.get("low") is not None and metric.get("high") is not None:
        text += f" [{metric['low']:.3f}, {metric['high']:.3f}]"
    return text


def _scores(block: dict[str, Any]) -> list[str]:
    head = f"**{block.get('source', '')}**" + (f" ({block['n']} {block.get('unit', 'images')})" if "n" in block else "")
    lines = [head + (f": {block['note']}" if block.get("note") else ""), "", "| measure | value [95 % interval] |",
             "|---|---|"]
    lines += [f"| {name} | {_figure(m)} |" for name, m in block.get("metrics", {}).items()]
    return lines + [""]


def _mapping(title: str, values: dict[str, Any]) -> list[str]:
    lines = [f"## {title}", ""]
    for key, value in values.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        lines.append(f"- {key.replace('_', ' ')}: {value}")
    return lines + [""]


def render_card(card: dict[str, Any]) -> str:
    lines = [f"# {card['name']}", ""]
    if card.get("summary"):
        lines += [card["summary"], ""]
    facts = {k: card[k] for k in ("architecture", "task", "modality", "classes", "built") if card.get(k)}
    if facts:
        lines += _mapping("Model", facts)
    for key, title in (("data", "Data and split"), ("recipe", "Recipe"), ("training", "Training")):
        if card.get(key):
            lines += _mapping(title, card[key])
    if card.get("internal_test"):
        lines += ["## Internal test (95 % bootstrap intervals)", ""] + _scores(card["internal_test"])
    if card.get("calibration"):
        lines += ["## Calibration of P(positive class) (95 % bootstrap intervals)", ""] + _scores(card["calibration"])
    if card.get("outside") or card.get("not_scored"):
        lines += ["## Outside sources", ""]
        for block in card.get("outside", []):
            lines += _scores(block)
        if card.get("not_scored"):
            lines += ["Not scored:", ""] + [f"- {item}" for item in card["not_scored"]] + [""]
    if card.get("operating_points"):
        lines += _mapping("Operating points", card["operating_points"])
    if card.get("intended_use"):
        lines += ["## Intended use", "", card["intended_use"], ""]
    if card.get("failure_modes"):
        lines += ["## Known failure modes", ""] + [f"- {item}" for item in card["failure_modes"]] + [""]
    lines += ["## Caution", "", card.get("caution") or CAUTION, ""]
    return "\n".join(lines)
