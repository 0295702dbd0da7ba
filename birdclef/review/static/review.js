// birdclef review: pages through the review's items, shows and plays each window, records labels.
"use strict";
const state = { page: 0, size: 20, total: 0 };
const $ = (sel, root = document) => root.querySelector(sel);

function status(text) { $("#status").textContent = text || ""; }

async function api(path, options) {
  const r = await fetch(path, options);
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return r.json();
}

function showLabel(card, label, givenAt) {
  const el = $(".label", card);
  el.textContent = label ? label : "";
  el.title = givenAt ? "given " + givenAt : "";
  card.classList.toggle("labelled", Boolean(label));
  card.dataset.label = label || "";
}

async function give(card, label) {
  try {
    const res = await api("/api/label", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ item: Number(card.dataset.item), label: label }),
    });
    showLabel(card, res.label, res.given_at);
    status("");
  } catch (e) { status(e.message); }
}

function render(items) {
  const main = $("#items");
  main.replaceChildren();
  for (const it of items) {
    const card = $("#card").content.firstElementChild.cloneNode(true);
    card.dataset.item = it.item;
    $(".rank", card).textContent = "#" + (it.item + 1);
    $(".name", card).textContent = it.name;
    $(".name", card).title = it.file;
    $(".span", card).textContent = it.start_s.toFixed(1) + "–" + it.end_s.toFixed(1) + " s";
    $(".score", card).textContent = (it.suggestion ? it.suggestion + " " : "") +
      (it.score === null ? "" : "score " + it.score.toFixed(3));
    $(".spec", card).src = "/api/spectrogram/" + it.item + ".png";
    $(".spec", card).loading = "lazy";
    $(".clip", card).src = "/api/audio/" + it.item + ".wav";
    if (it.suggestion) $(".code", card).value = it.suggestion;
    showLabel(card, it.label, it.given_at);
    $(".save", card).addEventListener("click", () => give(card, $(".code", card).value));
    $(".code", card).addEventListener("keydown", (ev) => { if (ev.key === "Enter") give(card, ev.target.value); });
    $(".not", card).addEventListener("click", () => give(card, "not"));
    $(".unsure", card).addEventListener("click", () => give(card, "unsure"));
    main.appendChild(card);
  }
}

async function load() {
  try {
    const res = await api("/api/items?page=" + state.page + "&size=" + state.size);
    state.total = res.total;
    const pages = Math.max(1, Math.ceil(state.total / state.size));
    $("#position").textContent = "page " + (state.page + 1) + " of " + pages + " (" + state.total + " windows)";
    $("#prev").disabled = state.page === 0;
    $("#next").disabled = state.page + 1 >= pages;
    render(res.items);
    document.body.dataset.loaded = String(state.page);
    const url = new URL(location.href);
    url.searchParams.set("page", state.page);
    history.replaceState(null, "", url);
  } catch (e) { status(e.message); }
}

async function start() {
  const page = Number(new URL(location.href).searchParams.get("page"));
  state.page = Number.isFinite(page) && page > 0 ? page : 0;
  try {
    const meta = await api("/api/meta");
    $("#source").textContent = meta.results || meta.db;
    for (const c of meta.classes.concat(meta.special)) {
      const o = document.createElement("option");
      o.value = c;
      $("#classes").appendChild(o);
    }
  } catch (e) { status(e.message); }
  $("#prev").addEventListener("click", () => { state.page -= 1; load(); });
  $("#next").addEventListener("click", () => { state.page += 1; load(); });
  await load();
}

start();
