// The covidlens page: sends the chosen files to this server's /v1 API and shows what comes back.
// Its main action screens the files as one study (/v1/screen); the details offer one model at a time
// (/v1/explain, /v1/quantify). Server text is only ever set as textContent; images arrive as base64 PNG
// inside the JSON, and the slice strip is drawn as SVG from the numbers.
// When the server requires a token, it is asked for once and kept in this tab's sessionStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "covidlens-token";
let served = { models: [] };

class TokenRefused extends Error {}

function pngUrl(base64) {
  return "data:image/png;base64," + base64;
}

function setBusy(busy, message) {
  $("submit").disabled = busy;
  $("detail-submit").disabled = busy;
  $("status").textContent = message;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function askForToken() {
  $("token-form").hidden = false;
  $("token-input").focus();
}

function useToken(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) {
    showError("Enter the access token first.");
    $("token-input").focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  $("token-form").hidden = true;
  $("error").hidden = true;
  loadModels();
}

// fetch with the stored token; a 401 forgets it and asks for it again.
async function fetchWithToken(url, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(url, { ...options, headers });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    askForToken();
    throw new TokenRefused(token
      ? "The server did not accept the access token; enter the right one in the Access token field."
      : "This server needs an access token; enter it in the Access token field.");
  }
  return response;
}

async function callApi(endpoint, files, params) {
  const body = new FormData();
  for (const file of files) body.append("file", file, file.name);
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v));
  const response = await fetchWithToken(`/v1/${endpoint}?${query}`, { method: "POST", body });
  let payload = null;
  try {
    payload = await response.json();
  } catch (e) {
    throw new Error(`The server answered ${response.status} without a readable result.`);
  }
  if (!response.ok) {
    const message = payload && payload.error ? payload.error.message : `The server answered ${response.status}.`;
    throw new Error(message);
  }
  return payload;
}

function percent(p) {
  return (100 * p).toFixed(1) + " %";
}

function amount(value, units) {
  if (value === null || value === undefined) return "not available";
  const shown = units === "mm2" ? "mm²" : units;
  return `${value.toFixed(1)} ${shown}`;
}

// A link to the model's card (GET /v1/models/{name}/card) when the server says it has one: [" ", <a>], or [].
function cardLink(model) {
  if (!model.card || !model.card.startsWith("/v1/models/")) return [];
  const link = document.createElement("a");
  link.href = model.card;
  link.target = "_blank";
  link.rel = "noopener";
  link.className = "model-card";
  link.textContent = "model card";
  return [" ", link];
}

function showPrediction(result) {
  const m = result.modality;
  $("result-modality").textContent = m.statement;
  $("result-decision").textContent = result.score === null
    ? result.decision
    : `${result.decision} (P(${result.positive_class}) = ${result.score.toFixed(3)})`;
  $("result-operating-point").textContent = result.operating_point_statement;
  $("result-model").replaceChildren(`${result.model.architecture}, trained on ${result.model.dataset || "unnamed data"}`,
    ...cardLink(result.model));
  $("result-caution").textContent = result.caution;
  const rows = $("probabilities").querySelector("tbody");
  rows.replaceChildren();
  for (const name of result.classes) {
    const row = document.createElement("tr");
    const cls = document.createElement("td");
    const value = document.createElement("td");
    cls.textContent = name;
    value.textContent = percent(result.probabilities[name]);
    row.append(cls, value);
    rows.append(row);
  }
  const e = result.explanation;
  const where = result.slice_index === null ? "the uploaded image" : `slice ${result.slice_index} of the volume`;
  const img = $("heat-image");
  img.src = pngUrl(e.overlay_png);
  img.alt = `Heat map laid over ${where}: red and yellow mark the regions that most drove the model towards ` +
    `${e.explained_class}; blue marks little influence. It shows where the model looked, not an outline of lesions.`;
  $("heat-caption").textContent = `${e.method} heat map for ${e.explained_class} (P = ${e.probability.toFixed(3)}), ` +
    `over ${where}.`;
  $("heat-download").href = img.src;
}

function showLesions(result) {
  const section = $("lesion-results");
  if (!result) {
    section.hidden = true;
    return;
  }
  if (result.volume_units) {
    $("lesion-amount").textContent = amount(result.lesion_volume, result.volume_units);
    $("lung-amount").textContent = amount(result.lung_volume, result.volume_units);
  } else {
    $("lesion-amount").textContent = amount(result.lesion_area, result.area_units) + " in this slice";
    $("lung-amount").textContent = amount(result.lung_area, result.area_units) + " in this slice";
  }
  $("lesion-percent").textContent = result.percent_involved === null
    ? "not available (no lung found)" : `${result.percent_involved.toFixed(2)} %`;
  $("lesion-severity").textContent = result.severity_class || "not available";
  const holder = $("lesion-overlays");
  holder.replaceChildren();
  for (const overlay of result.overlays) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = pngUrl(overlay.png);
    img.alt = `Slice ${overlay.slice_index} in the lung window: lesion found by the model tinted red, lung outline in green.`;
    const caption = document.createElement("figcaption");
    caption.textContent = `Lesions on slice ${overlay.slice_index}. `;
    const link = document.createElement("a");
    link.href = img.src;
    link.download = `covidlens-lesions-slice-${overlay.slice_index}.png`;
    link.textContent = `Download the lesion overlay of slice ${overlay.slice_index} (PNG)`;
    caption.append(link);
    figure.append(img, caption);
    holder.append(figure);
  }
  section.hidden = false;
}

function showNotes(results) {
  const list = $("notes");
  list.replaceChildren();
  const notes = new Set(results.flatMap((r) => (r ? r.notes : [])));
  if (notes.size === 0) notes.add("None.");
  for (const note of notes) {
    const item = document.createElement("li");
    item.textContent = note;
    list.append(item);
  }
}

function chosenFiles() {
  $("error").hidden = true;
  const files = Array.from($("file-input").files);
  if (files.length === 0) {
    showError("Choose a scan file first.");
    $("file-input").focus();
  }
  return files;
}

function requestOptions() {
  return { modality: $("modality").value, operating_point: $("operating-point").value };
}

function offerJson(linkId, result) {
  const link = $(linkId);
  if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([JSON.stringify(result, null, 2)], { type: "application/json" }));
}

function listLines(id, lines) {
  const list = $(id);
  list.replaceChildren();
  for (const line of lines.length ? lines : ["None."]) {
    const item = document.createElement("li");
    item.textContent = line;
    list.append(item);
  }
}

function figure(src, alt, caption) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = alt;
  const text = document.createElement("figcaption");
  text.textContent = caption;
  fig.append(img, text);
  return fig;
}

function areaText(value, units) {
  if (value === null || value === undefined) return "not measured";
  return units === "mm2" ? `${value.toFixed(1)} mm²` : `${value} pixels`;
}

function showStudy(study) {
  const v = study.verdict;
  const decision = $("study-decision");
  decision.textContent = v.decision;
  decision.className = `verdict lesions-${v.lesions.replace(" ", "-")}`;
  $("study-lesions").textContent = v.lesions;
  $("study-severity").textContent = v.severity || "not given (only a CT volume has one)";
  const secondLine = study.modality === "ct" ? " (the CT classifier's: a second line of evidence, not the verdict)" : "";
  $("study-score").textContent = v.covid19_score === null
    ? "not available (no classifier for this modality)" : v.covid19_score.toFixed(3) + secondLine;
  $("study-operating-point").textContent = v.operating_point;
  $("study-modality").textContent = study.modality_statement;
  $("study-caution").textContent = study.caution;
  listLines("study-rule", v.rule);
  listLines("study-missing", [...study.missing, ...study.notes]);
  const rows = $("study-measures").querySelector("tbody");
  rows.replaceChildren();
  for (const [name, value] of Object.entries(study.measures)) {
    const row = document.createElement("tr");
    const key = document.createElement("th");
    const cell = document.createElement("td");
    key.scope = "row";
    key.textContent = name.replaceAll("_", " ");
    cell.textContent = value === null ? "not available" : String(value);
    row.append(key, cell);
    rows.append(row);
  }
  showKeySlices(study);
  showStrip(study);
  const line = ["Models: "];
  study.models.forEach((m, i) => {
    if (i > 0) line.push("; ");
    line.push(`${m.role.replace("_", " ")} ${m.architecture} (${m.dataset || "unnamed data"}, ${m.engine})`, ...cardLink(m));
  });
  line.push(study.models.length ? "." : "none for this modality.");
  $("study-models").replaceChildren(...line);
  offerJson("study-json-download", study);
}

function showKeySlices(study) {
  const outline = study.kind === "picture" ? "the body outlined in green" : "the lung outlined in green";
  $("key-help").textContent = `The slices to read first (most lesion). Lesions found by the model are tinted red, ${outline}; ` +
    "heat maps show where the classifier looked (red strongest), not lesions.";
  const holder = $("key-slices");
  holder.replaceChildren();
  const single = study.kind !== "volume";
  for (const key of study.key_slices) {
    const where = single ? "the uploaded image" : `slice ${key.index}`;
    const shown = single ? "The uploaded image" : `Slice ${key.index}`;
    const facts = [];
    if (key.lesion_area !== null) facts.push(`lesion ${areaText(key.lesion_area, study.area_units)}`);
    if (key.p_covid !== null) facts.push(`P(COVID) ${key.p_covid.toFixed(3)}`);
    const title = (single ? "The image" : `Slice ${key.index}`) + (facts.length ? `: ${facts.join(", ")}.` : ".");
    const group = document.createElement("div");
    group.className = "key-slice";
    group.append(figure(pngUrl(key.lesion_png),
      `${shown} with the lesions found by the model tinted red and ${outline}.`, `${title} Lesions and outline.`));
    if (key.heat_png) {
      group.append(figure(pngUrl(key.heat_png),
        `Heat map of the classifier over ${where}: red and yellow mark the regions that most drove it towards COVID-19; ` +
        "it shows where the model looked, not an outline of lesions.", `${title} Classifier heat map.`));
    }
    holder.append(group);
  }
}

function svgElement(name, attributes) {
  const node = document.createElementNS($("strip-chart").namespaceURI, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

// Lesion area per slice as red bars, P(COVID) as a blue line, key slices marked below: the same
// picture as strip.png of covidlens screen, drawn here from the numbers.
function showStrip(study) {
  const slices = study.slices;
  const svg = $("strip-chart");
  $("slice-strip").hidden = slices.length === 0;
  svg.replaceChildren();
  if (!slices.length) return;
  const width = slices.length;
  const height = 40;
  const most = Math.max(...slices.map((s) => s.lesion_area || 0)) || 1;
  const keys = new Set(study.key_slices.map((k) => k.index));
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 4}`);
  svg.setAttribute("aria-label", `Lesion area of each of ${slices.length} slices, head to feet, with the classifier's P(COVID).`);
  for (const s of slices) {
    const bar = (s.lesion_area || 0) / most * height;
    const rect = svgElement("rect", { x: s.index + 0.05, y: height - bar, width: 0.9, height: bar, fill: "#d33" });
    const title = svgElement("title", {});
    title.textContent = `Slice ${s.index}: lesion ${areaText(s.lesion_area, study.area_units)}` +
      (s.p_covid === null ? "" : `, P(COVID) ${s.p_covid.toFixed(3)}`);
    rect.append(title);
    svg.append(rect);
    if (keys.has(s.index)) {
      svg.append(svgElement("rect", { x: s.index + 0.05, y: height + 1, width: 0.9, height: 3, fill: "#555" }));
    }
  }
  const scored = slices.filter((s) => s.p_covid !== null);
  if (scored.length) {
    const points = scored.map((s) => `${s.index + 0.5},${(1 - s.p_covid) * height}`).join(" ");
    svg.append(svgElement("polyline", { points, fill: "none", stroke: "#36c", "stroke-width": 1.5,
      "vector-effect": "non-scaling-stroke" }));
  }
  const unit = study.area_units === "mm2" ? "mm²" : "pixels";
  $("strip-caption").textContent = `Lesion area per slice (red bars, the tallest ${most.toFixed(0)} ${unit}), ` +
    `the CT classifier's P(COVID) from 0 to 1 (blue line), key slices marked below; head to feet, ${slices.length} slices.`;
}

async function screenStudy(event) {
  if (event) event.preventDefault();
  const files = chosenFiles();
  if (files.length === 0) return;
  setBusy(true, files.length > 1 ? `Screening ${files.length} files as one study…` : "Screening the study…");
  try {
    const study = await callApi("screen", files, requestOptions());
    showStudy(study);
    $("results").hidden = true;
    $("study").hidden = false;
    setBusy(false, `Done: ${study.verdict.decision}.`);
    $("study").focus();
  } catch (error) {
    setBusy(false, "The study could not be screened.");
    showError(error.message);
  }
}

async function detail() {
  const files = chosenFiles();
  if (files.length === 0) return;
  const params = requestOptions();
  setBusy(true, "Classifying and explaining…");
  try {
    const prediction = await callApi("explain", files, params);
    let lesions = null;
    const hasLesionModel = served.models.some((m) => m.id === "lesion");
    if (hasLesionModel && $("lesions").checked && prediction.modality.used === "ct") {
      setBusy(true, "Measuring lesions…");
      lesions = await callApi("quantify", files, { modality: "ct" });
    }
    showPrediction(prediction);
    showLesions(lesions);
    showNotes([prediction, lesions]);
    offerJson("json-download", { prediction, lesions });
    $("study").hidden = true;
    $("results").hidden = false;
    setBusy(false, `Done: ${prediction.decision}.`);
    $("results").focus();
  } catch (error) {
    setBusy(false, "The scan could not be screened.");
    showError(error.message);
  }
}

function wireDropZone() {
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    $("file-input").files = event.dataTransfer.files;
    if (!$("submit").disabled) screenStudy();  // dropping is the page's main action: screen the study
  });
}

async function loadModels() {
  try {
    const response = await fetchWithToken("/v1/models");
    served = await response.json();
  } catch (e) {
    const unreadable = "The server's model list could not be read; is the server running?";
    showError(e instanceof TokenRefused ? e.message : unreadable);
    return;
  }
  const modalities = new Set(served.models.filter((m) => m.role === "classifier").map((m) => m.modality));
  for (const option of $("modality").options) {
    if (option.value && !modalities.has(option.value)) option.remove();
  }
  $("lesion-field").hidden = !served.models.some((m) => m.id === "lesion");
}

// The server's /config says whether it wants a token and what the page must warn about.
async function start() {
  let config;
  try {
    config = await (await fetch("/config")).json();
  } catch (e) {
    showError("The server's settings could not be read; is the server running?");
    return;
  }
  if (config.warning) {
    $("exposure-warning").textContent = config.warning;
    $("exposure-warning").hidden = false;
  }
  if (config.auth_required && !sessionStorage.getItem(TOKEN_KEY)) {
    askForToken();
    return;
  }
  loadModels();
}

document.addEventListener("DOMContentLoaded", () => {
  $("upload-form").addEventListener("submit", screenStudy);
  $("detail-submit").addEventListener("click", detail);
  $("token-form").addEventListener("submit", useToken);
  wireDropZone();
  start();
});
