// deforum-engine studio: the page. Plain JS, no build step; everything goes through the HTTP API.
"use strict";

const $ = (id) => document.getElementById(id);
const LEVELS = ["very_low", "low", "medium", "high", "very_high"];
const UPLOAD_ID = /^[0-9a-f]{32}$/;
const IMAGE_TYPES = ["image/jpeg", "image/png", "image/webp"];

const UNIT_NUMBERS = [1, 2, 3, 4, 5];  // replaced by the engine's count from /api/options
const state = {
  options: null,
  uploads: { image_prompt: null, init_image: null, soundtrack_path: null, video_init_path: null },
  preset: null,     // the chosen motion preset's name (null: the engine's default motion)
  base: {},         // a loaded settings file: sent under the form's own fields
  job: null,        // the job shown in the render panel
  events: null,     // its EventSource
  sizes: {},        // job id -> "W x H", read once from its settings file
  curvesTimer: null,
};

// The schedules the form edits as Deforum text, each with its curve from the plan.
const SCHEDULE_LABELS = {
  zoom: "Zoom", angle: "Angle (°/frame)", translation_x: "Translation X", translation_y: "Translation Y",
  translation_z: "Translation Z", rotation_3d_x: "Rotation X (°/frame)", rotation_3d_y: "Rotation Y (°/frame)",
  rotation_3d_z: "Rotation Z (°/frame)", fov_schedule: "Field of view (°)",
  transform_center_x: "Zoom/turn centre X (0-1)", transform_center_y: "Zoom/turn centre Y (0-1)",
  perspective_flip_theta: "Flip theta (°)", perspective_flip_phi: "Flip phi (°)",
  perspective_flip_gamma: "Flip gamma (°)", perspective_flip_fv: "Flip field of view (°)",
  strength_schedule: "Strength", seed_schedule: "Seed schedule (the curve: every frame's seed)",
  cfg_scale_schedule: "CFG scale", noise_schedule: "Noise", contrast_schedule: "Contrast",
  hybrid_comp_alpha_schedule: "Composite alpha (share of the clip)",
};
const CAMERA = {  // the camera schedules each animation mode reads (Video Input and None: no camera)
  "2D": ["zoom", "angle", "translation_x", "translation_y", "transform_center_x", "transform_center_y"],
  "3D": ["translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "fov_schedule"],
};
const MODE_NOTES = {
  "Video Input": "Video Input: every frame starts from its frame of the clip (Video input, below), so the clip sets the frame count; the camera does not move.",
  None: "None: no camera motion; every frame is made anew from the prompts.",
};
const DIFFUSION = ["strength_schedule", "cfg_scale_schedule", "noise_schedule", "contrast_schedule", "seed_schedule"];
const FLIP = ["perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma", "perspective_flip_fv"];
const VIDEO_SCHEDULES = ["hybrid_comp_alpha_schedule"];
const CAMERA_FIELDS = [...new Set([...CAMERA["2D"], ...CAMERA["3D"]]), ...FLIP, "animation_mode", "use_depth_warping",
                       "depth_algorithm", "padding_mode", "enable_perspective_flip"];
// Fixed-set fields: setting -> select; their choices come from /api/options (the engine's lists).
const SELECTS = { sampler: "sampler", seed_behavior: "seed-behavior", color_coherence: "color-coherence",
                  border: "border", depth_algorithm: "depth-algorithm", padding_mode: "padding-mode",
                  hybrid_composite: "hybrid-composite", hybrid_motion: "hybrid-motion",
                  hybrid_flow_method: "hybrid-flow-method", optical_flow_cadence: "optical-flow-cadence",
                  frame_interpolation_engine: "frame-interpolation-engine", r_upscale_factor: "r-upscale-factor",
                  r_upscale_model: "r-upscale-model" };
const CHECKS = { use_depth_warping: "use-depth-warping", enable_perspective_flip: "enable-perspective-flip",
                 r_upscale_video: "r-upscale-video", seamless_loop: "seamless-loop" };
// Number boxes: setting -> [box, the form's word for it].
const NUMBERS = { max_frames: ["max-frames", "Frames"], fps: ["fps", "FPS"], W: ["width", "Width"], H: ["height", "Height"],
                  seed: ["seed", "Seed"], steps: ["steps", "Steps"], diffusion_cadence: ["diffusion-cadence", "Cadence"],
                  extract_nth_frame: ["extract-nth-frame", "Every Nth frame"],
                  extract_from_frame: ["extract-from-frame", "From frame"], extract_to_frame: ["extract-to-frame", "To frame"],
                  frame_interpolation_x_amount: ["frame-interpolation-x-amount", "Frames ×"] };
// A ControlNet unit's fields: key -> the form's word (the settings are cn_<N>_<key>).
const UNIT_LABELS = { enabled: "on", model: "model", module: "module", weight: "weight", guidance_start: "guidance start",
                      guidance_end: "guidance end", control_mode: "control mode", vid_path: "control image or clip" };
const UNIT_TEXTS = ["weight", "guidance_start", "guidance_end"];
// The form's words for the settings a message names.
const LABELS = { ...Object.fromEntries(Object.entries(NUMBERS).map(([name, [, label]]) => [name, label])),
                 sampler: "Sampler", seed_behavior: "Seed behaviour", color_coherence: "Colour coherence", border: "Border",
                 init_image: "Init image", image_prompt: "Image prompt", prompts: "Prompts", animation_mode: "Camera mode",
                 video_init_path: "Video clip", hybrid_composite: "Composite", hybrid_motion: "Hybrid motion",
                 hybrid_flow_method: "Flow method", optical_flow_cadence: "Optical-flow cadence",
                 frame_interpolation_engine: "Interpolation", r_upscale_video: "Upscale", r_upscale_factor: "Upscale by",
                 r_upscale_model: "Upscaler", seamless_loop: "Seamless loop", mask_file: "Mask",
                 ...SCHEDULE_LABELS,
                 ...Object.fromEntries(UNIT_NUMBERS.flatMap((n) => Object.entries(UNIT_LABELS).map(
                   ([key, label]) => [`cn_${n}_${key}`, `ControlNet unit ${n}${key === "enabled" ? "" : ` ${label}`}`]))) };

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
  buildControlUnits(options);
  buildFormFields(options);
  buildPresetGrid(options.presets);
  setInfluence(options.defaults.image_prompt_influence);
  wireUploads();
  wireForm();
  refreshJobs();
  setInterval(refreshJobs, 3000);
}

function fillNumbers(values) {
  for (const [setting, [id]] of Object.entries(NUMBERS)) if (values[setting] != null) $(id).value = values[setting];
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
  showPresetClip();
  // The preset fills the camera's fields (the rest of its defaults, too): the user starts from it and edits.
  const values = preset ? preset.settings : {};
  const camera = {};
  for (const name of CAMERA_FIELDS) camera[name] = values[name] ?? state.options.form_defaults[name];
  const others = Object.fromEntries(Object.entries(values).filter(([name]) => !CAMERA_FIELDS.includes(name)));
  fillForm({ ...camera, ...others });
}

function showPresetClip() {
  // The clip plays on the user's own picture: the init image, else the image prompt, else the input video's first frame.
  const preset = presetByName(state.preset);
  const clip = $("preset-clip");
  if (!preset) { clip.removeAttribute("src"); clip.load(); return; }
  const picture = state.uploads.init_image || ($("image-prompt-toggle").checked && state.uploads.image_prompt)
    || (clipUsed() && state.uploads.video_init_path);
  const url = preset.preview + (picture ? `?picture=${picture.id}` : "");
  if (clip.getAttribute("src") !== url) clip.src = url;
}

// --- the form's fields: schedules with their curves, choices --------------------------------------

function buildFormFields(options) {
  for (const [name, id] of Object.entries(SELECTS)) {
    for (const choice of options.choices[name]) $(id).add(new Option(choice, choice));
  }
  for (const mode of options.choices.animation_mode) {
    const label = document.createElement("label");
    const radio = document.createElement("input");
    Object.assign(radio, { type: "radio", name: "animation-mode", value: mode,
                           checked: mode === options.form_defaults.animation_mode });
    radio.addEventListener("change", () => { showMode(); refreshCurves(); });
    label.append(radio, ` ${mode}`);
    $("animation-mode").append(label);
  }
  for (const name of Object.keys(SCHEDULE_LABELS)) {
    const into = DIFFUSION.includes(name) ? "diffusion-schedules" : FLIP.includes(name) ? "flip-schedules"
      : VIDEO_SCHEDULES.includes(name) ? "video-schedules" : "camera-schedules";
    $(into).append(scheduleEditor(name));
  }
  for (const id of ["max-frames", "fps", "seed", "diffusion-cadence", "extract-nth-frame", "extract-from-frame",
                    "extract-to-frame"]) $(id).addEventListener("input", refreshCurves);
  for (const id of ["enable-perspective-flip", "seed-behavior", "hybrid-composite", "hybrid-motion"]) {
    $(id).addEventListener("change", () => { showMode(); refreshCurves(); });
  }
  fillForm(options.form_defaults);
}

// --- ControlNet units -----------------------------------------------------------------------------

function buildControlUnits(options) {
  const units = options.control_units;
  UNIT_NUMBERS.splice(0, UNIT_NUMBERS.length, ...Array.from({ length: units.count }, (_, i) => i + 1));
  const models = options.choices.cn_model;
  $("controlnet-note").textContent = models.length
    ? `ControlNet models on this studio: ${models.join(", ")}. Motion previews do not use the units; renders with the model do.`
    : "This studio has no ControlNet model (start it with `serve --controlnet MODEL`): you can set units up, and a motion preview leaves them out.";
  for (const n of UNIT_NUMBERS) $("control-units").append(controlUnit(n, options));
  fillUnits(Object.fromEntries(UNIT_NUMBERS.flatMap((n) => Object.entries(units.defaults).map(([key, value]) => [`cn_${n}_${key}`, value]))));
}

function controlUnit(n, options) {
  // One unit: its switch, then (while on) model, module, weight, guidance window, control mode and input.
  const unit = document.createElement("fieldset");
  unit.className = "unit";
  unit.id = `cn-${n}`;
  const field = (key, element) => {
    element.id = `cn-${n}-${key}`;
    const label = document.createElement("label");
    label.append(UNIT_LABELS[key][0].toUpperCase() + UNIT_LABELS[key].slice(1), element);
    return label;
  };
  const select = (key, choices) => {
    const element = document.createElement("select");
    for (const choice of choices) element.add(new Option(choice, choice));
    return field(key, element);
  };
  const legend = document.createElement("legend");
  const toggle = document.createElement("input");
  Object.assign(toggle, { type: "checkbox", id: `cn-${n}-enabled` });
  toggle.addEventListener("change", () => { unit.querySelector(".unit-body").hidden = !toggle.checked; });
  const title = document.createElement("label");
  title.className = "check";
  title.append(toggle, ` Unit ${n}`);
  legend.append(title);
  const body = document.createElement("div");
  body.className = "unit-body numbers";
  body.hidden = true;
  if (options.choices.cn_model.length) body.append(select("model", options.choices.cn_model));
  body.append(select("module", options.choices.cn_module));
  for (const key of UNIT_TEXTS) {
    const input = document.createElement("input");
    Object.assign(input, { type: "text", spellcheck: false, autocomplete: "off" });
    body.append(field(key, input));
  }
  body.append(select("control_mode", options.choices.cn_control_mode));
  const input = controlInput(n);
  unit.append(legend, body);
  body.append(input);
  return unit;
}

function controlInput(n) {
  // The unit's control picture or clip: an upload for cn_<n>_vid_path.
  const kind = `cn_${n}_vid_path`;
  const box = document.createElement("div");
  box.className = "unit-input";
  box.innerHTML = `<div class="dropzone small" id="cn-${n}-drop" tabindex="0" role="button"
      aria-label="Add unit ${n}'s control image or clip: click or drop a file">
    <input type="file" id="cn-${n}-file" accept="image/jpeg,image/png,image/webp,video/*" hidden>
    <img id="cn-${n}-thumb" class="thumb" alt="unit ${n}'s control image" hidden>
    <span class="hint"><b>+</b> Control image or clip</span></div>
    <div class="file-row"><span id="cn-${n}-name"></span>
    <button type="button" class="link" id="cn-${n}-remove" hidden>Remove</button></div>`;
  state.uploads[kind] = null;
  UPLOAD_PARTS[kind] = { drop: `cn-${n}-drop`, input: `cn-${n}-file`, thumb: `cn-${n}-thumb`, name: `cn-${n}-name`,
                         remove: `cn-${n}-remove`, media: "picture or video" };
  return box;
}

function fillUnits(values) {
  for (const n of UNIT_NUMBERS) {
    const value = (key) => values[`cn_${n}_${key}`];
    if (value("enabled") != null) {
      $(`cn-${n}-enabled`).checked = Boolean(value("enabled"));
      $(`cn-${n}`).querySelector(".unit-body").hidden = !value("enabled");
    }
    for (const key of ["model", "module", "control_mode", ...UNIT_TEXTS]) {
      const element = $(`cn-${n}-${key}`);
      if (element && value(key) != null && value(key) !== "None") element.value = String(value(key));
    }
  }
}

function unitsFromForm(doc) {
  for (const n of UNIT_NUMBERS) {
    doc[`cn_${n}_enabled`] = $(`cn-${n}-enabled`).checked;
    for (const key of ["model", "module", "control_mode", ...UNIT_TEXTS]) {
      const element = $(`cn-${n}-${key}`);
      if (element) doc[`cn_${n}_${key}`] = element.value.trim();
    }
    const input = state.uploads[`cn_${n}_vid_path`];
    doc[`cn_${n}_vid_path`] = input ? input.id : "";
  }
}

function scheduleEditor(name) {
  const block = document.createElement("div");
  block.className = "schedule";
  block.dataset.schedule = name;
  const label = document.createElement("label");
  label.htmlFor = `schedule-${name}`;
  label.textContent = SCHEDULE_LABELS[name];
  const input = document.createElement("input");
  input.type = "text";
  input.id = `schedule-${name}`;
  input.spellcheck = false;
  input.autocomplete = "off";
  input.setAttribute("aria-describedby", `error-${name}`);
  input.addEventListener("input", refreshCurves);
  const canvas = document.createElement("canvas");
  canvas.id = `curve-${name}`;
  canvas.width = 240;
  canvas.height = 54;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `${SCHEDULE_LABELS[name]} frame by frame`);
  const error = document.createElement("p");
  error.id = `error-${name}`;
  error.className = "message bad schedule-error";
  block.append(label, input, canvas, error);
  return block;
}

function clipUsed() {
  // Whether the render reads the input video (Video Input mode, or hybrid video), as the engine decides.
  return animationMode() === "Video Input" || $("hybrid-composite").value !== "None" || $("hybrid-motion").value !== "None";
}

function animationMode() {
  return document.querySelector("input[name=animation-mode]:checked").value;
}

function showMode() {
  const mode = animationMode();
  const shown = CAMERA[mode] || [];
  for (const block of document.querySelectorAll("#camera-schedules .schedule")) {
    block.hidden = !shown.includes(block.dataset.schedule);
  }
  $("mode-note").textContent = MODE_NOTES[mode] || "";
  $("mode-note").hidden = !MODE_NOTES[mode];
  $("depth-fields").hidden = mode !== "3D";
  $("flip-choice").hidden = !CAMERA[mode];
  $("flip-schedules").hidden = !CAMERA[mode] || !$("enable-perspective-flip").checked;
  $("schedule-seed_schedule").parentElement.hidden = $("seed-behavior").value !== "schedule";
  $("schedule-hybrid_comp_alpha_schedule").parentElement.hidden = $("hybrid-composite").value === "None";
  if (mode === "Video Input") $("video-details").open = true;
  showPresetClip();
}

function fillForm(values) {
  for (const name of Object.keys(SCHEDULE_LABELS)) {
    if (values[name] !== undefined && values[name] !== null) $(`schedule-${name}`).value = String(values[name]);
  }
  for (const [name, id] of Object.entries(SELECTS)) if (values[name] != null) $(id).value = values[name];
  for (const [name, id] of Object.entries(CHECKS)) if (values[name] != null) $(id).checked = Boolean(values[name]);
  fillNumbers(Object.fromEntries(Object.entries(values).filter(([name]) => !["max_frames", "fps", "W", "H", "seed", "steps"].includes(name))));
  if (values.animation_mode) {
    const wanted = String(values.animation_mode).toLowerCase();
    const radio = [...document.querySelectorAll("input[name=animation-mode]")].find((r) => r.value.toLowerCase() === wanted);
    if (radio) radio.checked = true;
  }
  fillUnits(values);
  showMode();
  refreshCurves();
}

function refreshCurves() {
  clearTimeout(state.curvesTimer);
  state.curvesTimer = setTimeout(drawCurves, 250);
}

async function drawCurves() {
  let answer;
  const doc = documentFromForm(false);
  try { answer = await postJSON("/api/plan/curves", doc); } catch (error) {
    // A clip the plan cannot use (no clip for Video Input, frames out of range) is said at the clip.
    const message = formWords(error.message);
    say("video-frames", /Video clip|Every Nth frame|From frame|To frame|video/i.test(message) ? message : "", "bad");
    return;
  }
  say("video-frames", doc.video_init_path && clipUsed() ? `The clip gives ${answer.frames} frames (Frames is set by it).` : "");
  for (const name of Object.keys(SCHEDULE_LABELS)) {
    const error = answer.errors[name] || "";
    $(`error-${name}`).textContent = error ? formWords(error) : "";
    $(`schedule-${name}`).setAttribute("aria-invalid", String(Boolean(error)));
    drawCurve($(`curve-${name}`), answer.curves[name], answer.step, errorFrame(error));
  }
}

function errorFrame(message) {
  // 'zoom: keyframe 2 ("30:(1.0 +)") ...': the frame of the keyframe at fault, to mark on the curve.
  const match = /keyframe \d+ \("\s*(-?\d+)/.exec(message);
  return match ? Number(match[1]) : null;
}

function drawCurve(canvas, values, step, badFrame) {
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  if (!values || !values.length) return;
  const lowest = Math.min(...values), highest = Math.max(...values);
  let low = lowest, high = highest;
  if (high - low < 1e-9) { low -= 1; high += 1; }  // a constant: a flat line across the middle
  const x = (i) => (values.length === 1 ? 0 : (i / (values.length - 1)) * (width - 2)) + 1;
  const y = (v) => height - 12 - ((v - low) / (high - low)) * (height - 18);
  context.strokeStyle = "#7c6cff";
  context.lineWidth = 1.5;
  context.beginPath();
  values.forEach((v, i) => (i ? context.lineTo(x(i), y(v)) : context.moveTo(x(i), y(v))));
  context.stroke();
  context.fillStyle = "#9296a8";
  context.font = "10px system-ui, sans-serif";
  const shown = (v) => `${+v.toPrecision(4)}`;
  context.fillText(highest === lowest ? `${shown(highest)} on every frame` : `max ${shown(highest)}`, 2, 9);
  context.fillText(`${highest === lowest ? "" : `min ${shown(lowest)} · `}${values.length * step} frames`, 2, height - 1);
  canvas.dataset.values = values.slice(0, 8).join(",");
  if (badFrame != null) {
    const at = x(Math.min(values.length - 1, Math.round(badFrame / step)));
    context.fillStyle = "#ff6b7a";
    context.fillRect(at - 1, 0, 3, height);
  }
}

// --- prompt keyframes -----------------------------------------------------------------------------

function addKeyframe(frame = null, prompt = "", negative = "") {
  const rows = $("prompt-keyframes");
  const frames = [...rows.querySelectorAll(".kf-frame")].map((input) => Number(input.value) || 0);
  const last = Math.max(0, ...frames);
  const row = document.createElement("div");
  row.className = "keyframe";
  const at = document.createElement("input");
  at.type = "number";
  at.min = "1";
  at.className = "kf-frame";
  at.value = frame ?? last + Math.max(1, Math.round((Number($("max-frames").value) || 120) / 4));
  at.setAttribute("aria-label", "Keyframe's frame");
  const texts = document.createElement("div");
  texts.className = "kf-texts";
  const text = document.createElement("textarea");
  text.rows = 2;
  text.className = "kf-prompt";
  text.value = prompt;
  text.placeholder = "the prompt from this frame on";
  text.setAttribute("aria-label", "Prompt from this frame");
  const neg = document.createElement("input");
  neg.type = "text";
  neg.className = "kf-negative";
  neg.value = negative;
  neg.placeholder = "negative (this keyframe)";
  neg.setAttribute("aria-label", "Negative prompt from this frame");
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "link kf-remove";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", "Remove this keyframe");
  remove.addEventListener("click", () => row.remove());
  texts.append(text, neg);
  row.append(at, texts, remove);
  rows.append(row);
  return row;
}

function promptsFromForm() {
  const prompts = { 0: $("prompt").value.trim() };
  for (const row of document.querySelectorAll("#prompt-keyframes .keyframe")) {
    const frame = row.querySelector(".kf-frame").value.trim();
    const text = row.querySelector(".kf-prompt").value.trim();
    const negative = row.querySelector(".kf-negative").value.trim();
    if (frame === "") throw new Error("A prompt keyframe's frame is empty");
    if (String(Number(frame)) in prompts) throw new Error(`Two prompt keyframes at frame ${Number(frame)}`);
    prompts[Number(frame)] = negative ? `${text} --neg ${negative}` : text;
  }
  return prompts;
}

function fillPrompts(prompts) {
  $("prompt-keyframes").replaceChildren();
  const entries = Object.entries(prompts || {}).sort((a, b) => Number(a[0]) - Number(b[0]));
  for (const [frame, text] of entries) {
    const [prompt, negative = ""] = String(text).split(/\s*--neg\s*/, 2);
    if (String(frame) === "0") { $("prompt").value = text; continue; }
    addKeyframe(frame, prompt, negative);
  }
}

// --- the form's words -----------------------------------------------------------------------------

function formWords(message) {
  // "document: `W`: must be a multiple of 8" -> "Width: must be a multiple of 8"
  let text = String(message).replace(/^(document|form|settings)(\s*\([^)]*\))?:\s*/, "");
  text = text.replace(/set soundtrack_path to use the audio variables/g, "add a soundtrack (Soundtrack, below) to use the audio variables");
  text = text.replace(/needs soundtrack_path/g, "needs a soundtrack (Soundtrack, below)");
  for (const [name, label] of Object.entries(LABELS)) {
    text = text.replace(new RegExp(`(^|[\\s;(])\`?${name}\`?(:|\\s)`, "g"), `$1${label}$2`);
  }
  return text;
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
  $("save-settings").addEventListener("click", saveSettingsFile);
  $("add-keyframe").addEventListener("click", () => addKeyframe().querySelector(".kf-prompt").focus());
  $("image-prompt-toggle").addEventListener("change", showPresetClip);
  $("cancel-button").addEventListener("click", () => state.job && act(state.job.id, "cancel"));
  $("resume-button").addEventListener("click", () => state.job && act(state.job.id, "resume"));
}

function documentFromForm(strict) {
  // strict: an empty box is an error in the form's words; otherwise (for the curves) it is left out.
  const doc = { ...state.base };
  for (const [id, label] of Object.values(NUMBERS)) {
    if ($(id).value.trim() === "" && strict) throw new Error(`${label} is empty`);
  }
  const number = (id) => ($(id).value.trim() === "" ? undefined : Number($(id).value));
  const prompt = $("prompt").value.trim();
  doc.prompts = strict ? promptsFromForm() : { 0: prompt };
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
  doc.video_init_path = state.uploads.video_init_path ? state.uploads.video_init_path.id : null;
  for (const [setting, [id]] of Object.entries(NUMBERS)) {
    const value = number(id);
    if (value === undefined) delete doc[setting]; else doc[setting] = value;
  }
  for (const name of Object.keys(SCHEDULE_LABELS)) doc[name] = $(`schedule-${name}`).value.trim();
  for (const [name, id] of Object.entries(SELECTS)) doc[name] = $(id).value;
  for (const [name, id] of Object.entries(CHECKS)) doc[name] = $(id).checked;
  doc.animation_mode = animationMode();
  unitsFromForm(doc);
  doc.name = state.base.name || nameFrom(prompt);
  return doc;
}

function saveSettingsFile() {
  let doc;
  try { doc = documentFromForm(true); } catch (error) { say("form-message", error.message, "bad"); return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" }));
  link.download = `${doc.name}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  say("form-message", `Saved ${doc.name}.json`, "good");
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
    const job = await postJSON(`/api/jobs?preview=${preview}`, documentFromForm(true));
    if (job.notes && job.notes.length) say("form-message", job.notes.join(" "), "good");
    watch(job);
    refreshJobs();
  } catch (error) {
    say("form-message", formWords(error.message), "bad");
  } finally {
    $("create-button").disabled = false;
  }
}

async function loadSettingsFile(file) {
  try {
    await loadSettings(JSON.parse(await file.text()), file.name);
  } catch (error) {
    say("form-message", `${file.name}: ${formWords(error.message)}`, "bad");
  }
}

async function loadSettings(document_, label) {
  say("form-message", "");
  const imported = await postJSON("/api/settings/import", document_);
  const settings = imported.settings;
  state.base = {};
  choosePreset(settings.motion_preset || null);
  state.base = settings;
  fillPrompts(settings.prompts);
  $("negative-prompt").value = settings.negative_prompts || "";
  if (settings.prompt_style) $("prompt-style").value = settings.prompt_style;
  fillNumbers(settings);
  fillForm(settings);
  for (const name of [...Object.keys(SCHEDULE_LABELS), ...Object.keys(SELECTS), ...Object.keys(CHECKS),
                      ...Object.keys(NUMBERS), "prompts", "negative_prompts", "animation_mode",
                      ...UNIT_NUMBERS.flatMap((n) => Object.keys(UNIT_LABELS).map((key) => `cn_${n}_${key}`))]) delete state.base[name];
  if (settings.image_prompt_influence !== undefined) setInfluence(settings.image_prompt_influence);
  const mode = document.querySelector(`input[name=image-prompt-mode][value=${settings.image_prompt_mode || "all"}]`);
  if (mode) mode.checked = true;
  if (settings.init_fit) $("init-fit").value = settings.init_fit;
  const denoise = settings.init_denoise ?? (settings.strength != null ? 1 - settings.strength : null);
  if (denoise != null) { $("init-denoise").value = denoise; $("init-denoise-label").textContent = Number(denoise).toFixed(2); }
  for (const kind of Object.keys(state.uploads)) await restoreUpload(kind, settings[kind]);
  for (const kind of ["color_coherence_image", "mask_file"]) {  // files the form keeps without showing them
    if (settings[kind]) state.base[kind] = uploadId(kind, settings[kind]);
  }
  $("image-prompt-toggle").checked = Boolean(state.uploads.image_prompt);
  $("image-prompt-panel").hidden = !state.uploads.image_prompt;
  showPresetClip();
  say("form-message", `Loaded ${label}` + (imported.notes.length ? `: ${imported.notes.map(formWords).join(" ")}` : ""), "good");
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

// media: what the upload holds (the server checks the content); the units' inputs are added as they are built.
const UPLOAD_PARTS = {
  image_prompt: { drop: "image-prompt-drop", input: "image-prompt-file", thumb: "image-prompt-thumb",
                  name: "image-prompt-name", remove: "image-prompt-remove", media: "image" },
  init_image: { drop: "init-image-drop", input: "init-image-file", thumb: "init-image-thumb",
                name: "init-image-name", remove: "init-image-remove", media: "image" },
  soundtrack_path: { input: "soundtrack-file", name: "soundtrack-name", remove: "soundtrack-remove", media: "audio" },
  video_init_path: { drop: "video-init-drop", input: "video-init-file", thumb: "video-init-thumb",
                     name: "video-init-name", remove: "video-init-remove", media: "video" },
};
const PICTURE_NAME = /\.(png|jpe?g|webp)$/i;

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
  if (parts.media === "image" && file.type && !IMAGE_TYPES.includes(file.type)) {  // the server checks the content anyway
    say("form-message", `${file.name}: not a JPEG, PNG or WEBP image`, "bad");
    return;
  }
  if (file.size > limit) {
    say("form-message", `${file.name} is larger than the ${(limit / 1048576).toFixed(0)} MB limit for ${LABELS[kind] || kind}`, "bad");
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
    say("form-message", formWords(error.message), "bad");
  }
}

function showUpload(kind, stored) {
  const parts = UPLOAD_PARTS[kind];
  state.uploads[kind] = stored;
  $(parts.name).textContent = stored ? stored.filename : (parts.media === "audio" ? "none" : "");
  $(parts.remove).hidden = !stored;
  if (parts.thumb) {  // a unit's clip has no thumbnail, only its name
    const thumb = $(parts.thumb);
    const shown = stored && (parts.media !== "picture or video" || PICTURE_NAME.test(stored.filename));
    thumb.hidden = !shown;
    if (shown) thumb.src = stored.url; else thumb.removeAttribute("src");
  }
  if (["image_prompt", "init_image", "video_init_path"].includes(kind) && state.options) showPresetClip();
  if (kind === "video_init_path" && state.options) refreshCurves();
}

// --- one render, live ----------------------------------------------------------------------------

function watch(job, play = null) {
  // play: the url of one of the job's videos after the render (upscaled, interpolated) to show first.
  if (state.events) state.events.close();
  state.job = job;
  state.play = play;
  $("render-title").textContent = job.name;
  $("result-video").hidden = true;
  $("result-video").removeAttribute("src");
  $("downloads").hidden = true;
  $("extra-videos").hidden = true;
  $("live-frame").hidden = true;
  say("render-message", "");
  showStatus(job);
  const events = state.events = new EventSource(job.links.events);
  events.addEventListener("status", (event) => showStatus(JSON.parse(event.data)));
  events.addEventListener("frame", (event) => {
    const frame = JSON.parse(event.data);
    if (!$("result-video").hidden) return;  // the finished video is playing: no still beside it
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
  if (job.status === "failed") say("render-message", formWords(job.error), "bad");
  else if (job.status === "cancelled") say("render-message", `Cancelled: the ${done} frames so far are kept; Resume continues the render.`);
  else say("render-message", "");
  if (job.status === "finished") showResult(job);
}

function showResult(job) {
  const video = $("result-video");
  if (job.links.video && !video.src) playVideo(state.play || job.links.video);
  showVideoChoices(job);
  $("download-video").href = job.links.video || "#";
  $("download-video").download = `${job.name}.mp4`;
  $("download-frames").href = job.links.frames_zip;
  $("download-settings").href = job.links.settings;
  $("download-settings").download = `${job.name}.json`;
  $("downloads").hidden = false;
}

function playVideo(url) {
  const video = $("result-video");
  video.src = url;
  video.hidden = false;
  $("live-frame").hidden = true;
  video.play().catch(() => {});
  for (const button of document.querySelectorAll("#extra-videos button")) {
    button.setAttribute("aria-pressed", String(button.dataset.url === url));
  }
}

function showVideoChoices(job) {
  // The render's video and those made after it (upscaled, interpolated): each to play and to download.
  const extra = job.extra_videos || [];
  const box = $("extra-videos");
  box.hidden = !extra.length;
  if (!extra.length) { box.replaceChildren(); return; }
  const items = [{ name: "Rendered", url: job.links.video, file: `${job.name}.mp4` }, ...extra];
  box.replaceChildren(...items.flatMap((item) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = item.name;
    button.dataset.url = item.url;
    button.setAttribute("aria-pressed", String($("result-video").getAttribute("src") === item.url));
    button.addEventListener("click", () => playVideo(item.url));
    const link = document.createElement("a");
    link.href = item.url;
    link.download = item.file;
    link.textContent = "↓";
    link.setAttribute("aria-label", `Download ${item.name}`);
    return [button, link];
  }));
}

function formatSeconds(seconds) {
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

// --- the job list ---------------------------------------------------------------------------------

async function refreshJobs() {
  let jobs;
  try { jobs = await api("/api/jobs"); } catch (_) { return; }
  $("gallery-empty").hidden = jobs.length > 0;
  const focused = document.activeElement && document.activeElement.closest(".render-card");
  const keep = focused ? [focused.dataset.job, document.activeElement.dataset.action] : null;
  $("gallery").replaceChildren(...jobs.map(renderCard));
  if (keep) {  // keyboard users keep their place while the gallery refreshes
    const again = document.querySelector(`.render-card[data-job="${keep[0]}"] [data-action="${keep[1]}"]`);
    if (again) again.focus({ preventScroll: true });  // the refresh never moves the page
  }
  for (const job of jobs) if (!(job.id in state.sizes)) readSize(job);
}

async function readSize(job) {
  state.sizes[job.id] = "";
  try {
    const settings = await api(job.links.settings);
    state.sizes[job.id] = `${settings.W}×${settings.H}`;
    const size = document.querySelector(`.render-card[data-job="${job.id}"] .size`);
    if (size) size.textContent = state.sizes[job.id];
  } catch (_) { delete state.sizes[job.id]; }
}

function renderCard(job) {
  const card = document.createElement("li");
  card.className = "render-card";
  card.dataset.job = job.id;
  const open = document.createElement("button");
  open.type = "button";
  open.className = "thumb-button";
  open.dataset.action = "open";
  open.setAttribute("aria-label", `Watch ${job.name}`);
  if (job.frames_done > 0) {
    const image = document.createElement("img");
    image.alt = "";
    image.loading = "lazy";
    image.src = `${job.links.latest_frame}?format=jpeg&v=${job.frames_done}`;
    open.append(image);
  } else {
    open.append("no frames yet");
  }
  open.addEventListener("click", () => watch(job));
  const title = document.createElement("h3");
  title.textContent = job.name;
  const meta = document.createElement("p");
  meta.className = "meta";
  const size = document.createElement("span");
  size.className = "size";
  size.textContent = state.sizes[job.id] || "";
  const badge = document.createElement("span");
  badge.className = `state ${job.status}`;
  badge.textContent = job.status + (job.preview ? " · preview" : "");
  meta.append(size, ` ${job.frames_done} / ${job.frames} frames `, badge);
  for (const extra of job.extra_videos || []) {  // the upscaled / interpolated videos, to watch from here
    const play = document.createElement("button");
    play.type = "button";
    play.className = "extra";
    play.dataset.action = `play-${extra.file}`;
    play.textContent = extra.name;
    play.setAttribute("aria-label", `Watch ${job.name}, ${extra.name}`);
    play.addEventListener("click", () => watch(job, extra.url));
    meta.append(play);
  }
  const actions = document.createElement("div");
  actions.className = "card-actions";
  const button = (text, action, handler) => {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = text;
    element.dataset.action = action;
    element.setAttribute("aria-label", `${text} ${job.name}`);
    element.addEventListener("click", handler);
    actions.append(element);
  };
  button("Watch", "watch", () => watch(job));
  button("Edit", "edit", () => editJob(job));
  if (job.resumable) button("Resume", "resume", () => act(job.id, "resume"));
  if (["queued", "running"].includes(job.status)) button("Cancel", "cancel", () => act(job.id, "cancel"));
  if (job.status !== "running") button("Delete", "delete", () => act(job.id, "delete"));
  card.append(open, title, meta, actions);
  if (job.error) {
    const error = document.createElement("p");
    error.className = "message bad";
    error.textContent = formWords(job.error);
    card.append(error);
  }
  return card;
}

async function editJob(job) {
  // The render's settings back in the form, to change and Create again.
  try {
    await loadSettings(await api(job.links.settings), job.name);
    $("create-form").scrollIntoView({ behavior: "smooth" });
    $("prompt").focus({ preventScroll: true });
  } catch (error) {
    say("form-message", `${job.name}: ${formWords(error.message)}`, "bad");
  }
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
