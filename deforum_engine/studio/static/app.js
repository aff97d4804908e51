// deforum-engine studio: the page. Plain JS, no build step; everything goes through the HTTP API.
"use strict";

const $ = (id) => document.getElementById(id);
const LEVELS = ["very_low", "low", "medium", "high", "very_high"];
const UPLOAD_ID = /^[0-9a-f]{32}$/;
const IMAGE_TYPES = ["image/jpeg", "image/png", "image/webp"];

const state = {
  options: null,
  uploads: { image_prompt: null, init_image: null, soundtrack_path: null },
  preset: null,     // the chosen motion preset's name (null: the engine's default motion)
  base: {},         // a loaded settings file: sent under the form's own fields
  job: null,        // the job shown in the render panel
  events: null,     // its EventSource
};

// --- the API --------------------------------------------------------------------------------------

async function api(path, init = {}) {
  const response = await fetch(path, init);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!response.ok) throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
  return body;
}

const postJSON = (path, body) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
});

function say(id, text, kind = "") {
  const element = $(id);
  element.textContent = text;
  element.className = `message ${kind}`;
}

// --- the form -------------------------------------------------------------------------------------

async function init() {
  const options = state.options = await api("/api/options");
  $("mode-badge").textContent = options.preview_only ? "motion previews (no model)" : `model: ${options.model || "default"}`;
  $("preview-toggle").checked = options.preview_only;
  $("preview-toggle").disabled = options.preview_only;
  for (const name of options.styles) $("prompt-style").add(new Option(name, name));
  fillNumbers(options.defaults);
  buildPresetGrid(options.presets);
  setInfluence(options.defaults.image_prompt_influence);
  wireUploads();
  wireForm();
  refreshJobs();
  setInterval(refreshJobs, 3000);
}

function fillNumbers(values) {
  const fields = { max_frames: "max-frames", fps: "fps", W: "width", H: "height", seed: "seed", steps: "steps" };
  for (const [setting, id] of Object.entries(fields)) if (values[setting] !== undefined) $(id).value = values[setting];
}

function buildPresetGrid(presets) {
  const grid = $("preset-grid");
  const none = { name: null, description: "No preset: the engine's gentle default zoom.", settings: {} };
  for (const preset of [none, ...presets]) {
    const card = document.createElement("button");
    card.type = "button";
    card.className = "preset";
    card.setAttribute("role", "option");
    card.dataset.preset = preset.name || "";
    card.textContent = preset.name ? preset.name.replaceAll("_", " ") : "none";
    card.title = preset.description;
    card.addEventListener("click", () => choosePreset(preset.name));
    grid.append(card);
  }
  choosePreset(null);
}

function presetByName(name) {
  return state.options.presets.find((preset) => preset.name === name) || null;
}

function choosePreset(name) {
  // A loaded settings file holds the old preset's schedules: drop them so the new preset's apply.
  for (const old of [presetByName(state.preset), presetByName(name)]) {
    if (old) for (const key of Object.keys(old.settings)) delete state.base[key];
  }
  state.preset = name;
  for (const card of document.querySelectorAll(".preset")) {
    card.setAttribute("aria-selected", String(card.dataset.preset === (name || "")));
  }
  const preset = presetByName(name);
  const clip = $("preset-clip");
  $("preset-description").textContent = preset ? preset.description : "No preset: the engine's gentle default zoom.";
  if (preset) clip.src = preset.preview; else { clip.removeAttribute("src"); clip.load(); }
}

function setInfluence(value) {
  const level = LEVELS.indexOf(String(value));
  const levels = state.options.influence_levels;
  if (level >= 0) {
    $("influence-slider").value = level;
    $("influence-value").value = levels[LEVELS[level]];
    $("influence-label").textContent = LEVELS[level].replace("_", " ");
    return;
  }
  const number = Number(value);
  $("influence-value").value = number;
  let nearest = 0;
  LEVELS.forEach((name, index) => {
    if (Math.abs(levels[name] - number) < Math.abs(levels[LEVELS[nearest]] - number)) nearest = index;
  });
  $("influence-slider").value = nearest;
  $("influence-label").textContent = levels[LEVELS[nearest]] === number ? LEVELS[nearest].replace("_", " ") : String(number);
}

function influence() {
  // The level's name when the number is exactly a level's scale, else the number itself.
  const number = Number($("influence-value").value);
  const match = LEVELS.find((name) => state.options.influence_levels[name] === number);
  return match || number;
}

function wireForm() {
  $("image-prompt-toggle").addEventListener("change", (event) => { $("image-prompt-panel").hidden = !event.target.checked; });
  $("influence-slider").addEventListener("input", (event) => setInfluence(LEVELS[Number(event.target.value)]));
  $("influence-value").addEventListener("change", (event) => setInfluence(event.target.value));
  $("init-denoise").addEventListener("input", (event) => { $("init-denoise-label").textContent = Number(event.target.value).toFixed(2); });
  $("create-form").addEventListener("submit", (event) => { event.preventDefault(); create(); });
  $("settings-file").addEventListener("change", (event) => { if (event.target.files[0]) loadSettingsFile(event.target.files[0]); });
  $("cancel-button").addEventListener("click", () => state.job && act(state.job.id, "cancel"));
  $("resume-button").addEventListener("click", () => state.job && act(state.job.id, "resume"));
}

function documentFromForm() {
  const doc = { ...state.base };
  const prompt = $("prompt").value.trim();
  const loaded = state.base.prompts || {};
  if (!("0" in loaded) || loaded["0"] !== prompt) doc.prompts = { ...loaded, 0: prompt };
  doc.negative_prompts = $("negative-prompt").value.trim();
  doc.prompt_style = $("prompt-style").value;
  doc.motion_preset = state.preset;
  const imagePrompt = $("image-prompt-toggle").checked ? state.uploads.image_prompt : null;
  doc.image_prompt = imagePrompt ? imagePrompt.id : null;
  doc.image_prompt_influence = influence();
  doc.image_prompt_mode = document.querySelector("input[name=image-prompt-mode]:checked").value;
  doc.init_image = state.uploads.init_image ? state.uploads.init_image.id : null;
  if (doc.init_image) { doc.init_denoise = Number($("init-denoise").value); doc.strength = null; }
  doc.init_fit = $("init-fit").value;
  doc.soundtrack_path = state.uploads.soundtrack_path ? state.uploads.soundtrack_path.id : null;
  doc.max_frames = Number($("max-frames").value);
  doc.fps = Number($("fps").value);
  doc.W = Number($("width").value);
  doc.H = Number($("height").value);
  doc.seed = Number($("seed").value);
  doc.steps = Number($("steps").value);
  doc.name = state.base.name || nameFrom(prompt);
  return doc;
}

function nameFrom(prompt) {
  const words = prompt.toLowerCase().match(/[a-z0-9]+/g) || [];
  return words.slice(0, 4).join("-") || "render";
}

async function create() {
  say("form-message", "");
  $("create-button").disabled = true;
  try {
    const preview = $("preview-toggle").checked;
    const job = await postJSON(`/api/jobs?preview=${preview}`, documentFromForm());
    if (job.notes && job.notes.length) say("form-message", job.notes.join(" "), "good");
    watch(job);
    refreshJobs();
  } catch (error) {
    say("form-message", error.message, "bad");
  } finally {
    $("create-button").disabled = false;
  }
}

async function loadSettingsFile(file) {
  say("form-message", "");
  try {
    const imported = await postJSON("/api/settings/import", JSON.parse(await file.text()));
    const settings = imported.settings;
    state.base = {};
    choosePreset(settings.motion_preset || null);
    state.base = settings;
    $("prompt").value = (settings.prompts || {})["0"] || "";
    $("negative-prompt").value = settings.negative_prompts || "";
    if (settings.prompt_style) $("prompt-style").value = settings.prompt_style;
    fillNumbers(settings);
    if (settings.image_prompt_influence !== undefined) setInfluence(settings.image_prompt_influence);
    const mode = document.querySelector(`input[name=image-prompt-mode][value=${settings.image_prompt_mode || "all"}]`);
    if (mode) mode.checked = true;
    if (settings.init_fit) $("init-fit").value = settings.init_fit;
    const denoise = settings.init_denoise ?? (settings.strength != null ? 1 - settings.strength : null);
    if (denoise != null) { $("init-denoise").value = denoise; $("init-denoise-label").textContent = Number(denoise).toFixed(2); }
    for (const kind of Object.keys(state.uploads)) await restoreUpload(kind, settings[kind]);
    if (settings.color_coherence_image) state.base.color_coherence_image = uploadId("color_coherence_image", settings.color_coherence_image);
    $("image-prompt-toggle").checked = Boolean(state.uploads.image_prompt);
    $("image-prompt-panel").hidden = !state.uploads.image_prompt;
    say("form-message", `Loaded ${file.name}` + (imported.notes.length ? `: ${imported.notes.join(" ")}` : ""), "good");
  } catch (error) {
    say("form-message", `${file.name}: ${error.message}`, "bad");
  }
}

async function restoreUpload(kind, value) {
  // A studio settings file names its files by their stored path, DATA/uploads/<id>.<ext>.
  delete state.base[kind];
  showUpload(kind, null);
  if (!value) return;
  showUpload(kind, await api(`/api/uploads/${uploadId(kind, value)}`));
}

function uploadId(kind, value) {
  const id = String(value).split(/[\\/]/).pop().replace(/\.[^.]*$/, "");
  if (!UPLOAD_ID.test(id)) throw new Error(`${kind}: ${value} is not a file uploaded to this studio; upload it again`);
  return id;
}

// --- uploads --------------------------------------------------------------------------------------

const UPLOAD_PARTS = {
  image_prompt: { drop: "image-prompt-drop", input: "image-prompt-file", thumb: "image-prompt-thumb",
                  name: "image-prompt-name", remove: "image-prompt-remove", image: true },
  init_image: { drop: "init-image-drop", input: "init-image-file", thumb: "init-image-thumb",
                name: "init-image-name", remove: "init-image-remove", image: true },
  soundtrack_path: { input: "soundtrack-file", name: "soundtrack-name", remove: "soundtrack-remove", image: false },
};

function wireUploads() {
  for (const [kind, parts] of Object.entries(UPLOAD_PARTS)) {
    const input = $(parts.input);
    input.addEventListener("change", () => { if (input.files[0]) upload(kind, input.files[0]); input.value = ""; });
    $(parts.remove).addEventListener("click", () => showUpload(kind, null));
    if (!parts.drop) continue;
    const zone = $(parts.drop);
    zone.addEventListener("click", () => input.click());
    zone.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); } });
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      const file = event.dataTransfer.files[0];
      if (file) upload(kind, file);
    });
  }
}

async function upload(kind, file) {
  const parts = UPLOAD_PARTS[kind];
  const limit = state.options.upload_limits[kind];
  say("form-message", "");
  if (parts.image && file.type && !IMAGE_TYPES.includes(file.type)) {  // the server checks the content anyway
    say("form-message", `${file.name}: not a JPEG, PNG or WEBP image`, "bad");
    return;
  }
  if (file.size > limit) {
    say("form-message", `${file.name} is larger than the ${(limit / 1048576).toFixed(0)} MB limit for ${kind}`, "bad");
    return;
  }
  $(parts.name).textContent = `uploading ${file.name}…`;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const url = `/api/uploads/${kind}?filename=${encodeURIComponent(file.name)}`;
    showUpload(kind, await api(url, { method: "POST", body: form }));
  } catch (error) {
    showUpload(kind, null);
    say("form-message", error.message, "bad");
  }
}

function showUpload(kind, stored) {
  const parts = UPLOAD_PARTS[kind];
  state.uploads[kind] = stored;
  $(parts.name).textContent = stored ? stored.filename : (parts.image ? "" : "none");
  $(parts.remove).hidden = !stored;
  if (parts.thumb) {
    const thumb = $(parts.thumb);
    thumb.hidden = !stored;
    if (stored) thumb.src = stored.url; else thumb.removeAttribute("src");
  }
}

// --- one render, live ----------------------------------------------------------------------------

function watch(job) {
  if (state.events) state.events.close();
  state.job = job;
  $("render-title").textContent = job.name;
  $("result-video").hidden = true;
  $("result-video").removeAttribute("src");
  $("downloads").hidden = true;
  $("live-frame").hidden = true;
  say("render-message", "");
  showStatus(job);
  const events = state.events = new EventSource(job.links.events);
  events.addEventListener("status", (event) => showStatus(JSON.parse(event.data)));
  events.addEventListener("frame", (event) => {
    const frame = JSON.parse(event.data);
    $("live-frame").src = frame.url;
    $("live-frame").dataset.shown = String(frame.index);
    $("live-frame").hidden = false;
  });
  events.addEventListener("end", () => { events.close(); refreshJobs(); });
}

function showStatus(job) {
  state.job = job;
  const done = job.frames_done || 0;
  $("progress-bar").style.width = `${Math.min(100, (100 * done) / Math.max(job.frames, 1))}%`;
  const parts = [`${done} / ${job.frames} frames`];
  if (job.fps) parts.push(`${job.fps.toFixed(1)} frames/s`);
  if (job.seconds_left != null && job.status === "running") parts.push(`${formatSeconds(job.seconds_left)} left`);
  const label = job.cancelling ? "cancelling" : job.status;
  $("progress-text").textContent = `${label}${job.preview ? " (motion preview)" : ""} · ${parts.join(" · ")}`;
  $("cancel-button").hidden = !["queued", "running"].includes(job.status) || job.cancelling;
  $("resume-button").hidden = !job.resumable;
  if (job.status === "failed") say("render-message", job.error, "bad");
  else if (job.status === "cancelled") say("render-message", `Cancelled: the ${done} frames so far are kept; Resume continues the render.`);
  else say("render-message", "");
  if (job.status === "finished") showResult(job);
}

function showResult(job) {
  const video = $("result-video");
  if (job.links.video && !video.src) {
    video.src = job.links.video;
    video.hidden = false;
    $("live-frame").hidden = true;
    video.play().catch(() => {});
  }
  $("download-video").href = job.links.video || "#";
  $("download-video").download = `${job.name}.mp4`;
  $("download-frames").href = job.links.frames_zip;
  $("download-settings").href = job.links.settings;
  $("download-settings").download = `${job.name}.json`;
  $("downloads").hidden = false;
}

function formatSeconds(seconds) {
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

// --- the job list ---------------------------------------------------------------------------------

async function refreshJobs() {
  let jobs;
  try { jobs = await api("/api/jobs"); } catch (_) { return; }
  const body = document.querySelector("#job-table tbody");
  body.replaceChildren(...jobs.map(jobRow));
}

function jobRow(job) {
  const row = document.createElement("tr");
  row.dataset.job = job.id;
  const cell = (content) => { const td = document.createElement("td"); td.append(content); row.append(td); return td; };
  cell(job.name + (job.preview ? " (preview)" : ""));
  const badge = document.createElement("span");
  badge.className = `state ${job.status}`;
  badge.textContent = job.status;
  cell(badge);
  cell(`${job.frames_done} / ${job.frames}`);
  cell(job.started ? new Date(job.started * 1000).toLocaleTimeString() : "");
  const actions = cell("");
  const button = (text, handler) => {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = text;
    element.addEventListener("click", handler);
    actions.append(element);
  };
  button("View", () => watch(job));
  if (job.resumable) button("Resume", () => act(job.id, "resume"));
  if (["queued", "running"].includes(job.status)) button("Cancel", () => act(job.id, "cancel"));
  if (job.status !== "running") button("Delete", () => act(job.id, "delete"));
  if (job.error) {
    const error = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 5;
    td.className = "error";
    td.textContent = job.error;
    error.append(td);
    return wrap(row, error);
  }
  return row;
}

function wrap(...rows) {
  const fragment = document.createDocumentFragment();
  fragment.append(...rows);
  return fragment;
}

async function act(id, action) {
  try {
    if (action === "delete") {
      await api(`/api/jobs/${id}`, { method: "DELETE" });
      if (state.job && state.job.id === id) { if (state.events) state.events.close(); state.job = null; }
    } else {
      const job = await api(`/api/jobs/${id}/${action}`, { method: "POST" });
      if (action === "resume" || (state.job && state.job.id === id)) watch(job);
    }
  } catch (error) {
    say("render-message", error.message, "bad");
  }
  refreshJobs();
}

init().catch((error) => say("form-message", `The studio could not start: ${error.message}`, "bad"));
