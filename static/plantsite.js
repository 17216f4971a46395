// Plantsite's pages: uploads with live results, keyboard review, live training progress.
"use strict";

const TERMINAL = ["final", "rejected", "failed"];
const REVIEW_POLL_MS = 3000;  // an expert's decision can take minutes

// When the server answered without waiting for a change (see watchPhotos), the pause before the
// 1st, 2nd, ... next ask for a queued photo (the last one repeats): quick at first, because a
// prediction is stored tens of milliseconds after the upload, then 250 ms. The schedule is
// labeling/polling.py's, rendered into <body data-result-poll-ms>.
function resultPollDelay(attempt) {
  const delays = (document.body.dataset.resultPollMs || "250").split(",").map(Number);
  return delays[Math.min(attempt, delays.length - 1)];
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

// The words of templates/labeling/_photo_status.html, so that a card updated live reads as the
// same card after a reload: who decided a final label (anything else was imported) ...
const DECIDED_BY_WORDS = new Map([["model", "model"], ["expert", "expert"], ["consensus", "consensus"],
  ["labeller", "one labeller"]]);
// ... and who rejected a photo (anything else: an expert).
const REJECTED_BY_WORDS = new Map([["consensus", "labellers"], ["labeller", "a labeller"]]);

function renderStatus(status, photo) {
  switch (photo.status) {
    case "queued": status.textContent = "Predicting…"; break;
    case "needs_review": status.textContent = "Awaiting expert"; break;
    case "final": {
      const by = document.createElement("small");
      by.textContent = `(${DECIDED_BY_WORDS.get(photo.decided_by) || "imported"})`;
      status.replaceChildren(`${photo.final_label} `, by);
      break;
    }
    case "rejected": status.textContent = `Rejected by ${REJECTED_BY_WORDS.get(photo.decided_by) || "expert"}`; break;
    default: status.textContent = "Failed";
  }
}

function renderPhoto(card, photo) {
  card.dataset.status = photo.status;
  const status = card.querySelector("[data-role=status]");
  renderStatus(status, photo);
  status.className = `status status-${photo.status}`;
  const reason = card.querySelector("[data-role=reason]");
  if (reason) reason.textContent = photo.reason || "";
  const wait = card.querySelector("[data-role=review-wait]");  // how long experts take: while it waits for one
  if (wait) wait.hidden = photo.status !== "needs_review";
  const probs = card.querySelector("[data-role=probabilities]");
  if (probs && photo.prediction) {
    const rows = Object.entries(photo.prediction.probabilities)
      .sort((a, b) => b[1] - a[1])
      .map(([name, p]) => `<tr><th>${escapeHtml(name)}</th><td><meter min="0" max="1" value="${p}"></meter> ${p.toFixed(3)}</td></tr>`);
    probs.innerHTML = `<table class="probs"><caption>Model version ${photo.prediction.model_version}</caption>${rows.join("")}</table>`;
    if (card.dataset.detail && photo.prediction.familiarity !== null) probs.append(familiaritySection(photo.prediction));
    if (card.dataset.detail && photo.prediction.explain_url) probs.append(explainSection(photo));
  }
  renderRetry(card, photo);
  renderDecidedBy(card, photo);
  if (!card.dataset.detail && photo.status === "failed") card.title = photo.reason || "";
}

// How like the photos its version learned from the photo looked, as templates/classifier/_familiarity.html
// says it: added when the prediction arrives while the photo page is open.
function familiaritySection(prediction) {
  const p = document.createElement("p");
  p.className = "hint";
  p.dataset.role = "familiarity";
  const similarity = prediction.familiarity.toFixed(3);
  const version = prediction.model_version;
  if (prediction.unfamiliar) {
    const strong = document.createElement("strong");
    strong.textContent = `Unlike the photos version ${version} learned from`;
    p.append(strong, `: similarity ${similarity} with the nearest, below the cut-off of ` +
      `${prediction.familiarity_cutoff.toFixed(3)}. The model is as sure of an answer for a photo it has never seen ` +
      "the like of as for any other.");
  } else if (prediction.familiarity_cutoff !== null) {
    p.textContent = `Similarity ${similarity} with the nearest photo version ${version} learned from, above the ` +
      `cut-off of ${prediction.familiarity_cutoff.toFixed(3)} for unfamiliar photos.`;
  } else {
    p.textContent = `Similarity ${similarity} with the nearest photo version ${version} learned from (the ` +
      "familiarity check was off).";
  }
  return p;
}

// The photo page's "Where the model looked", as templates/classifier/_explain.html serves it (without
// the links to the other labels): added when the prediction arrives while the page is open. Built
// with DOM calls, since a label's name goes into attributes.
function explainSection(photo) {
  const details = document.createElement("details");
  details.className = "explain";
  details.dataset.role = "explain";
  const summary = document.createElement("summary");
  summary.textContent = "Where the model looked";
  const img = document.createElement("img");
  img.loading = "lazy";
  img.width = img.height = 224;
  img.alt = `Where model version ${photo.prediction.model_version} looked when it answered ${photo.prediction.label} (Grad-CAM)`;
  img.src = photo.prediction.explain_url;
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.textContent = `Bright: the regions that argued most for its answer, ${photo.prediction.label}, in the image as the model saw it (resized and cropped).`;
  details.append(summary, img, hint);
  return details;
}

// The photo page's "Predict again", for a failed photo only, as templates/labeling/photo_detail.html
// serves it: added when the photo fails while the page is open.
function renderRetry(card, photo) {
  const url = card.dataset.retryUrl;
  const form = card.querySelector("[data-role=retry-form]");
  if (!url || photo.status !== "failed") { if (form) form.remove(); return; }
  if (form) return;
  const retry = document.createElement("form");
  retry.method = "post";
  retry.action = url;
  retry.dataset.role = "retry-form";
  retry.innerHTML = '<input type="hidden" name="csrfmiddlewaretoken"><button type="submit" data-role="retry">Predict again</button>';
  retry.querySelector("input").value = csrfToken();
  card.querySelector("[data-role=reason]").after(retry);
}

// The photo page's "Decided by NAME at TIME." line: for a photo a person decided.
function renderDecidedBy(card, photo) {
  const line = card.querySelector("[data-role=decided-by]");
  if (!line) return;
  line.hidden = !photo.reviewed_by;
  if (!photo.reviewed_by) return;
  line.querySelector("[data-role=reviewer]").textContent = photo.reviewed_by;
  const at = line.querySelector("[data-role=decided-at]");
  at.dateTime = photo.decided_at || "";
  at.textContent = photo.decided_at ? new Date(photo.decided_at).toLocaleString() : "";
}

function escapeHtml(text) {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

// The photos in flight on this page are watched with one request at a time: the server answers
// as soon as one of them changes status (GET /api/v1/photos/updates/?photos=ID:STATUS,...&wait=),
// so a result shows the moment it is stored. If the server answers without waiting (every wait
// slot taken), the page asks again on the polling schedule above; if it fails, less and less often.
const WATCH_WAIT_S = 20;
const WATCH_MAX = 50;               // photos per request (the server's limit)
const WATCH_RETRY_MS = 500;         // after a failure, doubled per failure in a row
const watchedCards = new Map();     // photo id -> card, in the order they are asked about
let watchWake = null;               // cuts the request or pause in flight short
let watching = false;

// first: a photo just uploaded, asked about before the others (behind 50 photos awaiting an
// expert, it waited a whole long poll for its prediction).
function watchPhoto(card, first = false) {
  if (TERMINAL.includes(card.dataset.status)) return;
  const id = card.dataset.photoId;
  if (first) {
    const others = [...watchedCards].filter(([other]) => other !== id);
    watchedCards.clear();
    watchedCards.set(id, card);
    others.forEach(([other, otherCard]) => watchedCards.set(other, otherCard));
  } else {
    watchedCards.set(id, card);
  }
  if (watchWake) watchWake.abort();  // ask again at once, with this photo
  if (!watching) watchPhotos();
}

// The photos of the next request: those being predicted first (a result is due any moment),
// then the others, each group in the map's order.
function photosToAsk() {
  const cards = [...watchedCards.values()];
  const queued = cards.filter((c) => c.dataset.status === "queued");
  return queued.concat(cards.filter((c) => c.dataset.status !== "queued")).slice(0, WATCH_MAX);
}

// Resolves once the page is shown: a page in a background tab asks the server nothing (the
// training page asked every second, all day, in a forgotten tab), and asks at once when shown.
function whenVisible() {
  if (document.visibilityState !== "hidden") return Promise.resolve();
  return new Promise((resolve) => {
    const shown = () => {
      if (document.visibilityState === "hidden") return;
      document.removeEventListener("visibilitychange", shown);
      resolve();
    };
    document.addEventListener("visibilitychange", shown);
  });
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); });
  });
}

// After `failures` failed asks in a row (none: the usual pause), the pause before the next one:
// doubled at each failure up to BACKOFF_MAX_MS, and never shorter than the server's
// Retry-After, so that a server that is down or restarting is not hammered.
const BACKOFF_MAX_MS = 30000;

function backoffDelay(baseMs, failures, response) {
  return Math.max(Math.min(baseMs * 2 ** failures, BACKOFF_MAX_MS), retryAfterMs(response));
}

// Retry-After in milliseconds (seconds or an HTTP date); 0 when there is none.
function retryAfterMs(response) {
  const value = response ? response.headers.get("Retry-After") : null;
  if (!value) return 0;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? 0 : Math.max(0, date - Date.now());
}

const WATCH_STOPS = {
  401: "You are logged out: log in again and reload this page.",
  403: "You are logged out: log in again and reload this page.",
};

// A word in the page's alert region when the page stops showing changes by itself.
function showWatchError(message) {
  const error = document.getElementById("watch-error");
  if (!error) return;
  error.textContent = message;
  error.classList.remove("hidden");
}

async function watchPhotos() {
  watching = true;
  let attempt = 0;   // answers in a row without a change: the polling schedule's step
  let failures = 0;  // failed asks in a row: each one doubles the pause
  while (watchedCards.size) {
    // Also the first ask waits here for the cards that the page adds in the same task: a page of
    // 50 photos in flight opens with one request, where each card used to cut its predecessor's.
    await whenVisible();
    const cards = photosToAsk();
    const query = cards.map((c) => `${c.dataset.photoId}:${c.dataset.status}`).join(",");
    const controller = new AbortController();
    watchWake = controller;
    const started = performance.now();
    let changed = false;
    let response = null;
    const gone = new Set();  // deleted, or no longer visible to this user: not asked about again
    try {
      response = await fetch(`/api/v1/photos/updates/?photos=${query}&wait=${WATCH_WAIT_S}`,
        { headers: { Accept: "application/json" }, signal: controller.signal });
      if (WATCH_STOPS[response.status]) {
        watchedCards.clear();  // logged out meanwhile: asking again would fail again, forever
        showWatchError(WATCH_STOPS[response.status]);
        break;
      }
      if (response.ok) {
        const body = await response.json();
        for (const photo of body.photos) {
          const card = watchedCards.get(String(photo.id));
          if (card) { renderPhoto(card, photo); changed = true; }
        }
        for (const id of body.missing) { gone.add(String(id)); changed = true; }
      }
    } catch (err) {
      if (controller.signal.aborted) { attempt = 0; continue; }
      response = null;  /* a network blip, or not JSON (a proxy's error page): asked again below */
    }
    for (const card of cards) {
      watchedCards.delete(card.dataset.photoId);  // to the back of the line (more than WATCH_MAX)
      if (gone.has(card.dataset.photoId)) { markGone(card); continue; }
      if (!TERMINAL.includes(card.dataset.status) && card.isConnected) watchedCards.set(card.dataset.photoId, card);
    }
    if (!response || !response.ok) {
      failures += 1;
      await pause(backoffDelay(WATCH_RETRY_MS, failures, response), controller.signal);
      continue;
    }
    failures = 0;
    if (changed) { attempt = 0; continue; }
    const queued = cards.some((c) => c.dataset.status === "queued");
    const left = (queued ? resultPollDelay(attempt) : REVIEW_POLL_MS) - (performance.now() - started);
    attempt += 1;
    if (left > 0) await pause(left, controller.signal);
  }
  watching = false;
  watchWake = null;
}

function markGone(card) {
  const status = card.querySelector("[data-role=status]");
  if (status) status.textContent = "No longer available";
}

function photoCard(photo) {
  const li = document.createElement("li");
  li.className = "photo-card";
  li.dataset.photoId = photo.id;
  li.dataset.status = photo.status;
  li.innerHTML = `<a href="/photos/${photo.id}/"><img alt="Photo ${photo.id}"></a><span data-role="status" aria-live="polite"></span>`;
  li.querySelector("img").src = sitePath(photo.image_url);
  renderPhoto(li, photo);
  return li;
}

// The path of a URL the API answered with, on this page's own host: the API's URLs are absolute,
// and behind a proxy that rewrites Host they name the host the proxy forwards to.
function sitePath(url) {
  const parsed = new URL(url, window.location.href);
  return parsed.pathname + parsed.search;
}

// One line per refused file: several files go at once, and each refusal must stay readable.
function showUploadError(file, message) {
  const error = document.getElementById("upload-error");
  const line = document.createElement("div");
  line.textContent = `${file.name}: ${message}`;
  error.append(line);
  error.classList.remove("hidden");
}

function clearUploadErrors() {
  const error = document.getElementById("upload-error");
  error.replaceChildren();
  error.classList.add("hidden");
}

// A file's place in the list from the moment it is chosen: waiting its turn, uploading, waiting
// out the upload limit; replaced by the photo's card once stored, removed if refused (the
// refusal is listed above the form).
function uploadingCard(file) {
  const li = document.createElement("li");
  li.className = "upload-card";
  li.innerHTML = '<span class="upload-name"></span> <span class="status" data-role="upload-status">Waiting to upload…</span>';
  li.querySelector(".upload-name").textContent = file.name;
  return li;
}

function postPhoto(form, file) {
  const data = new FormData();
  data.append("image", file);
  return fetch(form.dataset.api, {
    method: "POST", body: data, headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
  });
}

async function uploadFile(form, file, placeholder) {
  const say = (text) => { placeholder.querySelector("[data-role=upload-status]").textContent = text; };
  let response;
  try {
    say("Uploading…");
    response = await postPhoto(form, file);
    const wait = response.status === 429 ? retryAfterMs(response) : 0;
    if (wait) {  // over the upload limit: once more when the server says it will be allowed
      say(`Too many uploads: trying again in ${Math.ceil(wait / 1000)} s…`);
      await pause(wait);
      say("Uploading again…");
      response = await postPhoto(form, file);
    }
  } catch (err) {
    placeholder.remove();
    showUploadError(file, "network error, not uploaded.");
    return;
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    placeholder.remove();
    showUploadError(file, (body.image && body.image[0]) || body.detail || `Upload failed (${response.status}).`);
    return;
  }
  const card = photoCard(body);
  placeholder.replaceWith(card);
  watchPhoto(card, true);
}

// Files from the picker (or the phone camera) and files dropped on the form go to `send`.
function acceptFiles(form, input, send) {
  input.addEventListener("change", () => { send(input.files); input.value = ""; });
  form.addEventListener("dragover", (e) => { e.preventDefault(); form.classList.add("dragging"); });
  form.addEventListener("dragleave", () => form.classList.remove("dragging"));
  form.addEventListener("drop", (e) => {
    e.preventDefault();
    form.classList.remove("dragging");
    send(e.dataTransfer.files);
  });
  // A file dropped just beside the form: the browser's own drop opened it in place of this page,
  // ending the uploads in flight. Outside the form a drop does nothing.
  document.addEventListener("dragover", (e) => {
    if (form.contains(e.target)) return;
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = "none";
  });
  document.addEventListener("drop", (e) => { if (!form.contains(e.target)) e.preventDefault(); });
}

// At most UPLOAD_PARALLEL uploads at once, the others waiting their turn in order: all at once,
// they shared a phone's uplink and ran into the server's upload limit together. `settled` runs
// after each one ends.
const UPLOAD_PARALLEL = 3;

function uploadQueue(settled = () => {}) {
  const waiting = [];
  let running = 0;
  const pump = () => {
    while (running < UPLOAD_PARALLEL && waiting.length) {
      const upload = waiting.shift();
      running += 1;
      upload().finally(() => { running -= 1; settled(); pump(); });
    }
  };
  // Leaving the page would end the uploads in flight: the browser asks first.
  window.addEventListener("beforeunload", (e) => {
    if (!waiting.length && !running) return;
    e.preventDefault();
    e.returnValue = "";
  });
  return {
    add(upload) { waiting.push(upload); pump(); },
    get left() { return waiting.length + running; },
  };
}

function setUpUpload() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = form.querySelector("input[type=file]");
  const queue = uploadQueue();
  const send = (files) => {
    clearUploadErrors();
    const empty = document.getElementById("no-photos");
    if (empty && files.length) empty.remove();
    Array.from(files).forEach((file) => {
      const placeholder = uploadingCard(file);
      document.getElementById("photo-list").prepend(placeholder);
      queue.add(() => uploadFile(form, file, placeholder));
    });
  };
  acceptFiles(form, input, send);
}

// One submission per form: a second click or key press while the next page loads posted the
// same thing again, and its answer contradicted the first's ("another expert decided it", "a
// run is already active"). The submit buttons are disabled once the form has gone, and enabled
// again when the browser shows this page from its back-forward cache.
const sentForms = new WeakSet();

function guardPostForms() {
  document.addEventListener("submit", (e) => {
    const form = e.target;
    if ((form.getAttribute("method") || "").toLowerCase() !== "post") return;  // not form.method: an input may be named so
    if (sentForms.has(form)) { e.preventDefault(); return; }
    if (e.defaultPrevented) return;  // the page's own script sends it (an upload)
    sentForms.add(form);
    // After this event: a button disabled now would leave its name and value out of the form.
    setTimeout(() => form.querySelectorAll("button, input[type=submit]").forEach((button) => {
      if (button.disabled) return;
      button.disabled = true;
      button.dataset.sentDisabled = "1";
    }));
  });
  window.addEventListener("pageshow", (e) => {
    if (!e.persisted) return;
    document.querySelectorAll("[data-sent-disabled]").forEach((button) => {
      button.disabled = false;
      delete button.dataset.sentDisabled;
      sentForms.delete(button.form);
    });
  });
}

function setUpReviewKeys() {
  const form = document.getElementById("review-form");
  const next = document.getElementById("next-photo");
  const start = document.getElementById("start-reviewing");
  if (!form && !next && !start) return;
  // One decision per page: a key press while the next page loads would post the same photo
  // again, or leave for the next one (guardPostForms stops clicks).
  const sent = () => (form && sentForms.has(form)) || (start && start.form && sentForms.has(start.form));
  document.addEventListener("keydown", (e) => {
    if (sent() || ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "n" && next) { e.preventDefault(); window.location = next.href; return; }
    // The queue's "Start reviewing" claims the next photo and opens it.
    if (e.key === "s" && start && !start.disabled) { e.preventDefault(); start.click(); return; }
    const button = form && form.querySelector(`button[data-key="${CSS.escape(e.key)}"]`);
    if (button) { e.preventDefault(); button.click(); }
  });
}

function drawLossCurve(svg, history) {
  const series = [["train_loss", "#2a7"], ["valid_loss", "#c52"]];
  const values = history.flatMap((h) => series.map(([k]) => h[k])).filter(Number.isFinite);
  if (!values.length) return;
  const max = Math.max(...values) * 1.1 || 1;
  const n = Math.max(history.length - 1, 1);
  const at = (i, value) => [10 + (380 * i) / n, 140 - (130 * value) / max];
  svg.innerHTML = series.map(([key, colour]) => lossSeries(history, key, colour, at)).join("")
    + `<text x="12" y="12" font-size="10">train (green) / valid (red) loss, max ${max.toFixed(2)}</text>`;
}

// One loss series: a marker per epoch (a single epoch is a point, which a line cannot show), and
// lines between consecutive epochs. A diverged epoch's loss is stored as null: the line breaks
// there instead of plunging to 0, which would read as a perfect epoch.
function lossSeries(history, key, colour, at) {
  const segments = [[]];
  const markers = [];
  history.forEach((h, i) => {
    if (!Number.isFinite(h[key])) { segments.push([]); return; }
    const [x, y] = at(i, h[key]);
    segments[segments.length - 1].push(`${x},${y}`);
    markers.push(`<circle cx="${x}" cy="${y}" r="2.5" fill="${colour}"></circle>`);
  });
  const lines = segments.filter((points) => points.length > 1).map((points) =>
    `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points.join(" ")}"></polyline>`);
  return `<g data-series="${key}"><title>${key}</title>${lines.join("")}${markers.join("")}</g>`;
}

// The training page asks for its run every second while it is queued or running. Answers that
// asking again cannot change end the loop with a word in the page; other failures (a restart,
// a network blip) are asked about again, less and less often, so a down server is not hammered.
const TRAINING_POLL_MS = 1000;
const TRAINING_STOPS = {
  401: "You are logged out: reload the page after logging in.",
  403: "You are no longer allowed to see this run: reload the page after logging in as an admin.",
  404: "This run no longer exists.",
};
const TRAINING_DONE = ["succeeded", "failed", "cancelled"];

function renderTrainingRun(box, run) {
  const set = (role, value) => { const el = box.querySelector(`[data-role=${role}]`); if (el) el.textContent = value; };
  box.dataset.status = run.status;
  set("status", run.status);
  set("device", run.device);
  set("epoch", run.epoch);
  set("total-epochs", run.total_epochs);
  set("batch", run.batch);
  set("total-batches", run.total_batches);
  box.querySelector("[data-role=progress]").value = run.progress;
  set("progress-text", `${Math.round(run.progress * 100)}%`);
  set("log", run.log);
  // The run's data is frozen when it starts running, after this page was served.
  set("data-count", run.data_count);
  set("data-hash", run.data_hash || "—");
  set("source-counts", sourceCountsText((run.metrics || {}).data_sources));
  drawLossCurve(box.querySelector("[data-role=loss-curve]"), run.history || []);
  showTrainingError(box, run.error);
  if (run.model_version) {
    box.querySelector("[data-role=model-version]").innerHTML =
      `Created <a href="/models/${run.model_version}/">model version ${run.model_version}</a>.`;
  }
}

// As classifier/views.py's training_run lists them: by source, ": import 3, expert 2".
function sourceCountsText(sources) {
  const counts = Object.entries(sources || {}).sort(([a], [b]) => (a < b ? -1 : 1));
  return counts.length ? `: ${counts.map(([source, count]) => `${source} ${count}`).join(", ")}` : "";
}

function showTrainingError(box, message) {
  const error = box.querySelector("[data-role=error]");
  error.textContent = message;
  error.classList.toggle("hidden", !message);
}

async function pollTrainingRun() {
  const box = document.getElementById("training-run");
  if (!box) return;
  let failures = 0;  // in a row: each one doubles the pause
  while (true) {
    await whenVisible();
    let status = 0;
    let run = null;
    let response = null;
    try {
      response = await fetch(box.dataset.api, { headers: { Accept: "application/json" } });
      status = response.status;
      if (response.ok) run = await response.json();
    } catch (err) { /* a network blip, or not JSON (a proxy's error page): asked again below */ }
    if (TRAINING_STOPS[status]) {
      showTrainingError(box, TRAINING_STOPS[status]);
      return;
    }
    if (run) {
      renderTrainingRun(box, run);
      if (TRAINING_DONE.includes(run.status)) {
        const cancel = box.querySelector("[data-role=cancel]");
        if (cancel) cancel.closest("form").remove();
        return;
      }
    }
    failures = run ? 0 : failures + 1;
    await pause(backoffDelay(TRAINING_POLL_MS, failures, run ? null : response));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  guardPostForms();
  setUpUpload();
  setUpReviewKeys();
  setUpGrid();
  document.querySelectorAll(".photo-card[data-photo-id]").forEach(watchPhoto);
  pollTrainingRun();
});

// --- Shared labelling: a key per label, s to skip, x for "not a plant / unusable" -----------

function setUpLabellingKeys() {
  const form = document.getElementById("labelling-form");
  if (!form) return;
  // One answer per photo: a second key press or click while the next page loads is not sent
  // (guardPostForms); it was, and the page said "Not saved" for an answer that was saved.
  document.addEventListener("keydown", (e) => {
    if (sentForms.has(form) || ["INPUT", "TEXTAREA", "SELECT"].includes(e.target.tagName) || e.ctrlKey || e.metaKey || e.altKey) return;
    const button = form.querySelector(`button[data-key="${CSS.escape(e.key)}"]`);
    if (button) { e.preventDefault(); button.click(); }
  });
}

// --- Bulk upload: each file on its own request, with its own progress bar and result --------

function bulkRow(file) {
  const li = document.createElement("li");
  li.className = "bulk-item";
  li.dataset.result = "waiting";
  li.innerHTML = '<span class="bulk-name"></span> <progress max="1" value="0"></progress> <span data-role="result">waiting</span>';
  li.querySelector(".bulk-name").textContent = file.name;
  return li;
}

function bulkSend(form, file, label, li) {
  return new Promise((resolve) => {
    const data = new FormData();
    data.append("image", file);
    data.append("label", label);
    const xhr = new XMLHttpRequest();
    const bar = li.querySelector("progress");
    const result = li.querySelector("[data-role=result]");
    const finish = (outcome, text) => {
      li.dataset.result = outcome;
      result.textContent = text;
      result.className = `bulk-result bulk-${outcome}`;
      bar.value = 1;
      resolve(outcome);
    };
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.value = e.loaded / e.total;
    });
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { /* not JSON: reported below */ }
      if (body.result === "accepted") {
        finish("accepted", `accepted: photo ${body.photo.id}${body.photo.final_label ? ` (${body.photo.final_label})` : " (the model will predict it)"}`);
      } else if (body.result === "duplicate") {
        finish("duplicate", body.photo ? `duplicate of photo ${body.photo.id}` : `duplicate: ${body.reason}`);
      } else {
        const why = body.reason || (body.image && body.image[0]) || (body.label && body.label[0]) || body.detail
          || `the server answered ${xhr.status}`;
        finish("refused", `refused: ${why}`);
      }
    });
    xhr.addEventListener("error", () => finish("refused", "refused: the upload failed (network error)"));
    xhr.open("POST", form.dataset.api);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    li.dataset.result = "uploading";
    result.textContent = "uploading…";
    xhr.send(data);
  });
}

function setUpBulkUpload() {
  const form = document.getElementById("bulk-upload");
  if (!form) return;
  const input = document.getElementById("bulk-files");
  const list = document.getElementById("bulk-results");
  const summary = document.getElementById("bulk-summary");
  const counts = { accepted: 0, duplicate: 0, refused: 0 };
  const report = () => {
    const left = queue.left;
    const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    summary.textContent = `${counts.accepted} accepted, ${plural(counts.duplicate, "duplicate")}, ${counts.refused} refused`
      + (left ? `, ${left} to go…` : ".");
    summary.dataset.done = left ? "" : "1";
  };
  const queue = uploadQueue(report);
  const send = (files) => {
    const label = document.getElementById("bulk-label").value;
    Array.from(files).forEach((file) => {
      const li = bulkRow(file);
      list.append(li);
      queue.add(() => bulkSend(form, file, label, li).then((outcome) => { counts[outcome] += 1; }));
    });
    report();
  };
  form.addEventListener("submit", (e) => e.preventDefault());
  acceptFiles(form, input, send);
}

document.addEventListener("DOMContentLoaded", () => {
  setUpLabellingKeys();
  setUpBulkUpload();
});

// The grid's button counts the ticked photos (templates/labeling/review_grid.html).
function setUpGrid() {
  const form = document.getElementById("grid-form");
  if (!form) return;
  const count = form.querySelector("[data-role=ticked]");
  form.addEventListener("change", () => {
    count.textContent = form.querySelectorAll("input[name=photos]:checked").length;
  });
}

