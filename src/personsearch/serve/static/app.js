// personsearch serve: the search page (plain JavaScript, no build step, no external resources).
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // the /api/detect answer of the query image

function setStatus(text, error = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

function fmt(value, digits) {
  return Number(value).toFixed(digits);
}

function percentBox(el, box) {
  const [x1, y1, x2, y2] = box;
  el.style.left = (100 * x1 / current.width) + "%";
  el.style.top = (100 * y1 / current.height) + "%";
  el.style.width = (100 * (x2 - x1) / current.width) + "%";
  el.style.height = (100 * (y2 - y1) / current.height) + "%";
}

async function loadInfo() {
  try {
    const info = await api("/api/info");
    const idx = info.index;
    $("info").textContent = `${idx.path}: ${idx.images} images, ${idx.frames} video frames, ` +
      `${idx.detections} people · model ${info.model_id.slice(0, 12)} on ${info.device}`;
  } catch (e) {
    $("info").textContent = "index info unavailable: " + e.message;
  }
}

async function detect(form) {
  setStatus("detecting people…");
  $("hits").replaceChildren();
  $("results-title").hidden = true;
  try {
    current = await api("/api/detect", { method: "POST", body: form });
  } catch (e) {
    current = null;
    $("stage").hidden = true;
    setStatus(e.message, true);
    return;
  }
  const img = $("query-img");
  img.onload = () => {
    $("stage").hidden = false;
    fitQuery();
    drawPeople();
    const n = current.people.length;
    setStatus(n ? `${current.name}: ${n} ${n === 1 ? "person" : "people"} detected; click one, or drag a box.`
      : `${current.name}: nobody detected; drag a box around the person.`);
  };
  img.src = current.image_url;
}

// the query image as large as the panel allows, and no taller than most of the window
function fitQuery() {
  if (!current) return;
  const room = $("query-panel").clientWidth;
  const scale = Math.min(room / current.width, 0.78 * window.innerHeight / current.height);
  $("query-img").style.width = Math.max(1, Math.floor(current.width * scale)) + "px";
}

function drawPeople() {
  const layer = $("people");
  layer.replaceChildren();
  current.people.forEach((person, i) => {
    const el = document.createElement("div");
    el.className = "person";
    el.dataset.n = String(i + 1);
    el.title = `person ${i + 1} (score ${fmt(person.score, 3)})`;
    const label = document.createElement("span");
    label.textContent = String(i + 1);
    el.appendChild(label);
    percentBox(el, person.box);
    layer.appendChild(el);
  });
}

async function query(box, selected) {
  document.querySelectorAll(".person.selected").forEach((el) => el.classList.remove("selected"));
  if (selected) {
    selected.classList.add("selected");
    $("drawn").hidden = true;
  }
  const body = {
    image_token: current.image_token,
    box: box.map(Number),
    top_k: Number($("top-k").value) || 20,
    exclude_query_image: !$("include-own").checked,
  };
  const source = $("source").value.trim();
  if (source) body.sources = [source];
  const range = $("time-range").value.trim();
  if (range) {
    const parts = range.split(",").map(Number);
    if (parts.length !== 2 || parts.some((v) => !Number.isFinite(v))) {
      setStatus("video time: expected start,end in seconds", true);
      return;
    }
    body.time_range = parts;
  }
  setStatus("searching…");
  let result;
  try {
    result = await api("/api/query", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (e) {
    setStatus(e.message, true);
    return;
  }
  showHits(result);
  const where = result.box.map((v) => Math.round(v)).join(",");
  setStatus(`box ${where}: ${result.hits.length} hits, most similar first. Click one for its whole frame.`);
}

function showHits(result) {
  const hits = $("hits");
  hits.replaceChildren();
  $("results-title").hidden = false;
  $("results-title").textContent = `Hits (${result.hits.length})`;
  for (const hit of result.hits) {
    const card = document.createElement("figure");
    card.className = "hit";
    card.dataset.rank = String(hit.rank);
    const img = document.createElement("img");
    img.src = hit.thumbnail_url;
    img.alt = `hit ${hit.rank}`;
    img.loading = "lazy";
    const caption = document.createElement("figcaption");
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = `#${hit.rank}  ${fmt(hit.similarity, 3)}`;
    const path = document.createElement("div");
    path.className = "path";
    path.textContent = hit.path;
    const meta = document.createElement("div");
    meta.textContent = (hit.timestamp === null ? "image" : `video ${hit.time}`) + ` · det ${fmt(hit.score, 2)}`;
    caption.append(rank, path, meta);
    card.append(img, caption);
    card.addEventListener("click", () => openFrame(hit));
    hits.appendChild(card);
  }
}

function openFrame(hit) {
  $("viewer-img").src = hit.image_url;
  const when = hit.timestamp === null ? "" : ` at ${hit.time}`;
  $("viewer-caption").textContent = `#${hit.rank} similarity ${fmt(hit.similarity, 4)}: ${hit.path}${when}`;
  $("viewer").hidden = false;
}

// dragging a box on the query image
let dragStart = null;
let dragFrom = null; // the person box a drag started on

function imagePoint(event) {
  const rect = $("query-img").getBoundingClientRect();
  const x = (event.clientX - rect.left) / rect.width * current.width;
  const y = (event.clientY - rect.top) / rect.height * current.height;
  return [Math.min(Math.max(x, 0), current.width), Math.min(Math.max(y, 0), current.height)];
}

function dragBox(event) {
  const [x, y] = imagePoint(event);
  const [x0, y0] = dragStart;
  return [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)];
}

function setup() {
  loadInfo();
  $("file-input").addEventListener("change", () => {
    const file = $("file-input").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file);
    detect(form);
  });
  $("use-id").addEventListener("click", () => {
    const id = $("image-id").value.trim();
    if (!/^\d+$/.test(id)) {
      setStatus("image id: expected a whole number", true);
      return;
    }
    const form = new FormData();
    form.append("image_id", id);
    detect(form);
  });
  $("query-form").addEventListener("submit", (event) => event.preventDefault());
  const stage = $("stage");
  stage.addEventListener("mousedown", (event) => {
    if (!current || event.button !== 0) return;
    event.preventDefault();
    dragStart = imagePoint(event);
    dragFrom = event.target.closest(".person");
  });
  window.addEventListener("mousemove", (event) => {
    if (!dragStart) return;
    const drawn = $("drawn");
    drawn.hidden = false;
    percentBox(drawn, dragBox(event));
  });
  window.addEventListener("mouseup", (event) => {
    if (!dragStart) return;
    const box = dragBox(event);
    dragStart = null;
    const rect = $("query-img").getBoundingClientRect();
    const scale = rect.width / current.width;
    if ((box[2] - box[0]) * scale < 5 || (box[3] - box[1]) * scale < 5) {
      $("drawn").hidden = true;
      if (dragFrom) { // a click on a detected person
        query(current.people[Number(dragFrom.dataset.n) - 1].box, dragFrom);
      }
      return;
    }
    percentBox($("drawn"), box);
    query(box, null);
  });
  window.addEventListener("resize", fitQuery);
  $("viewer").addEventListener("click", () => {
    $("viewer").hidden = true;
    $("viewer-img").removeAttribute("src");
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") $("viewer").hidden = true;
  });
}

document.addEventListener("DOMContentLoaded", setup);
