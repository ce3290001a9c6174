// The covidlens page: sends the chosen files to this server's /v1 API and shows what comes back.
// Server text is only ever set as textContent; images arrive as base64 PNG inside the JSON.
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

function showPrediction(result) {
  const m = result.modality;
  $("result-modality").textContent = m.statement;
  $("result-decision").textContent = result.score === null
    ? result.decision
    : `${result.decision} (P(${result.positive_class}) = ${result.score.toFixed(3)})`;
  $("result-operating-point").textContent = result.operating_point_statement;
  $("result-model").textContent = `${result.model.architecture}, trained on ${result.model.dataset || "unnamed data"}`;
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

async function screen(event) {
  event.preventDefault();
  $("error").hidden = true;
  const files = Array.from($("file-input").files);
  if (files.length === 0) {
    showError("Choose a scan file first.");
    $("file-input").focus();
    return;
  }
  const params = { modality: $("modality").value, operating_point: $("operating-point").value };
  setBusy(true, "Screening the scan…");
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
    const blob = new Blob([JSON.stringify({ prediction, lesions }, null, 2)], { type: "application/json" });
    const link = $("json-download");
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
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
    $("status").textContent = `${event.dataTransfer.files.length} file(s) chosen.`;
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
  $("upload-form").addEventListener("submit", screen);
  $("token-form").addEventListener("submit", useToken);
  wireDropZone();
  start();
});
