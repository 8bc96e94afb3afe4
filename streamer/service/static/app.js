// streamer dashboard: polls the JSON API every 2 s and updates the page in place.
//
// Every piece of stream text (words, examples, source ids) is inserted with
// textContent / text nodes, never innerHTML: the feed is untrusted input.
"use strict";

const REFRESH_MS = 2000;
const LIMIT = 50;
const RATE_POINTS = 90;
const MAX_SOURCES = 12;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  newOnly: true,
  sort: "score",
  rows: new Map(),        // word -> <tr>, reused so that fresh-row animations play once
  ranks: new Map(),       // word -> place in the table at the previous refresh
  seen: null,             // words shown before (null until the first load: no highlights)
  lastStats: null,        // {t, chars, lines} of the previous /stats sample
  rates: [],              // recent chars/s samples for the rate sparkline
  serverOffset: 0,        // server_time - Date.now()/1000
  stream: null,           // {t, at, replay}: the service's stream time t, sampled at `at`
};

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

// ---------------------------------------------------------------- formatting

function fmtInt(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return "—";
  return Math.round(Number(n)).toLocaleString("en-US");
}

function fmtCompact(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return "—";
  n = Number(n);
  const abs = Math.abs(n);
  if (abs >= 1e9) return (n / 1e9).toFixed(abs >= 1e10 ? 1 : 2) + " G";
  if (abs >= 1e6) return (n / 1e6).toFixed(abs >= 1e7 ? 1 : 2) + " M";
  if (abs >= 1e4) return (n / 1e3).toFixed(abs >= 1e5 ? 0 : 1) + " k";
  return fmtInt(n);
}

function fmtNum(n, digits) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return "—";
  n = Number(n);
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

function fmtCount(n) {
  if (n === null || n === undefined || !Number.isFinite(Number(n))) return "—";
  n = Number(n);
  return Math.abs(n) >= 100 ? fmtInt(n) : fmtNum(n, 1);
}

function fmtBytes(n) {
  if (!Number.isFinite(Number(n))) return null;
  n = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n >= 100 ? 0 : 1) : n) + " " + units[i];
}

function toSeconds(t) {
  if (t === null || t === undefined) return null;
  if (typeof t === "number") return t;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms / 1000;
}

function nowServer() {
  return Date.now() / 1000 + state.serverOffset;
}

// "Now" on the stream's clock, which first_seen/last_seen are measured on. It is the
// wall clock for a live feed, but a replayed archive (time.mode = "replay") runs on
// the archive's own time, which only moves as text is read.
function nowStream() {
  const s = state.stream;
  if (!s) return nowServer();
  return s.replay ? s.t : s.t + (Date.now() / 1000 - s.at);
}

function fmtAge(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return "—";
  seconds = Math.max(0, seconds);
  if (seconds < 60) return Math.round(seconds) + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
  return Math.floor(seconds / 86400) + " d";
}

function fmtSeen(iso) {
  const t = toSeconds(iso);
  if (t === null) return "—";
  const age = nowStream() - t;
  if (age >= -60 && age < 86400) return fmtAge(age) + " ago";
  return iso.slice(0, 10);
}

// ---------------------------------------------------------------- sparklines

// Points of a sparkline. zeroBase keeps 0 at the bottom (rates); otherwise the
// series is scaled to its own range (word trends), and a nearly flat series is
// drawn flat in the middle instead of magnifying noise.
function sparkPath(values, width, height, pad, zeroBase) {
  let max = Math.max(...values);
  let min = zeroBase ? Math.min(0, ...values) : Math.min(...values);
  if (!zeroBase && max - min <= 0.02 * Math.max(Math.abs(max), 1e-9)) {
    min -= Math.abs(max) || 1;
    max += Math.abs(max) || 1;
  }
  const span = max - min || 1;
  const step = values.length > 1 ? (width - 2 * pad) / (values.length - 1) : 0;
  return values.map((v, i) => [
    pad + i * step,
    height - pad - ((v - min) / span) * (height - 2 * pad),
  ]);
}

function sparkline(history) {
  const W = 96, H = 26, P = 2.5;
  const node = svg("svg", { class: "spark", viewBox: `0 0 ${W} ${H}`, role: "img" });
  const values = (history || []).map((p) => Number(Array.isArray(p) ? p[1] : p))
    .filter(Number.isFinite);
  if (values.length < 2) {
    node.appendChild(svg("line", { class: "line flat", x1: P, y1: H - P, x2: W - P, y2: H - P }));
    node.setAttribute("aria-label", "not enough history yet");
    return node;
  }
  const pts = sparkPath(values, W, H, P, false);
  const line = pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  const area = `M${pts[0][0].toFixed(1)},${H - P} L${line.replaceAll(" ", " L")} ` +
    `L${pts[pts.length - 1][0].toFixed(1)},${H - P} Z`;
  node.appendChild(svg("path", { class: "area", d: area }));
  node.appendChild(svg("polyline", { class: "line", points: line }));
  const [lx, ly] = pts[pts.length - 1];
  node.appendChild(svg("circle", { cx: lx.toFixed(1), cy: ly.toFixed(1), r: 2.2 }));
  node.setAttribute("aria-label", `recent counts, last ${fmtNum(values[values.length - 1], 1)}`);
  return node;
}

function drawRateSpark() {
  const host = $("rate-spark");
  host.replaceChildren();
  const values = state.rates;
  if (values.length < 2) return;
  const W = 240, H = 36;
  const pts = sparkPath(values, W, H, 2, true);
  const line = pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  host.appendChild(svg("path", {
    class: "area",
    d: `M${pts[0][0]},${H} L${line.replaceAll(" ", " L")} L${pts[pts.length - 1][0]},${H} Z`,
  }));
  host.appendChild(svg("polyline", { class: "line", points: line }));
}

// ---------------------------------------------------------------- rows

function exampleNode(example, word) {
  const td = el("td", "example");
  if (!example) {
    td.textContent = "—";
    return td;
  }
  td.title = example;
  const parts = word ? String(example).split(word) : [String(example)];
  parts.forEach((part, i) => {
    if (i > 0) td.appendChild(el("mark", null, word));
    if (part) td.appendChild(document.createTextNode(part));
  });
  return td;
}

// "#" is the row's place in this table (the new-words view skips the known words the
// service also ranks); the rank among all published words is in the tooltip.
function fillRow(tr, w, place, prevPlace) {
  const rank = el("td", "rank", place);
  if (w.rank) rank.title = `rank ${w.rank} among all published words`;
  if (prevPlace !== undefined && prevPlace !== place) {
    const up = prevPlace > place;
    rank.appendChild(el("span", "delta " + (up ? "up" : "down"),
      (up ? "▲" : "▼") + Math.abs(prevPlace - place)));
  }
  const word = el("td", "word");
  word.appendChild(el("span", "w", w.word));
  if (w.new) word.appendChild(el("span", "badge new", "NEW"));
  else if (w.known) word.appendChild(el("span", "badge known", "known"));
  const trend = el("td", "trend");
  trend.appendChild(sparkline(w.history));
  // emergence = min(z, 3) × quality, z the evidence of a rise in standard deviations, quality
  // = score / ln(1 + count) (the score without its evidence factor): "hot" at the cap (3 or
  // more)
  const em = Number(w.emergence);
  const z = em / (Number(w.score) / Math.log1p(Number(w.count)));
  const hot = Number.isFinite(z) && z >= 3 - 1e-9;
  const emCell = el("td", "num");
  const emSpan = el("span", "em" + (hot ? " hot" : em === 0 ? " cool" : ""),
    Number.isFinite(em) ? em.toFixed(2) + (hot ? " ↑" : "") : "—");
  emSpan.title = !Number.isFinite(z) ? ""
    : hot ? "rising: 3 or more standard deviations (capped at 3) × quality"
    : "rising: " + z.toFixed(1) + " standard deviations × quality";
  emCell.appendChild(emSpan);
  tr.className = [w.known ? "known" : "", tr.classList.contains("fresh") ? "fresh" : ""]
    .filter(Boolean).join(" ");
  tr.dataset.word = w.word;
  tr.replaceChildren(
    rank, word, trend,
    el("td", "num", fmtNum(w.score, 2)),
    el("td", "num", fmtCount(w.count)),
    emCell,
    el("td", "seen", fmtSeen(w.first_seen)),
    exampleNode(w.example, w.word),
  );
  tr.querySelector("td.seen").title = w.first_seen || "";
}

function renderWords(data) {
  const tbody = $("rows");
  const words = Array.isArray(data.words) ? data.words : [];
  const wanted = new Set(words.map((w) => w.word));
  for (const [word, tr] of state.rows) {
    if (!wanted.has(word)) { tr.remove(); state.rows.delete(word); }
  }
  const empty = tbody.querySelector("tr.empty");
  if (!words.length) {
    if (!empty) {
      const tr = el("tr", "empty");
      const td = el("td", null, state.newOnly ? "no new words yet" : "no words yet");
      td.colSpan = 8;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
  } else if (empty) {
    empty.remove();
  }
  words.forEach((w, i) => {
    let tr = state.rows.get(w.word);
    if (!tr) {
      tr = document.createElement("tr");
      state.rows.set(w.word, tr);
      if (state.seen !== null && !state.seen.has(w.word)) {
        tr.classList.add("fresh");
        tr.addEventListener("animationend", () => tr.classList.remove("fresh"), { once: true });
      }
    }
    fillRow(tr, w, i + 1, state.ranks.get(w.word));
    // Move a row only when it is out of place: moving restarts its animations.
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
  });
  state.ranks = new Map(words.map((w, i) => [w.word, i + 1]));
  if (state.seen === null) state.seen = new Set();
  for (const w of words) state.seen.add(w.word);
  $("shown").textContent = words.length
    ? `showing ${words.length} of ${fmtInt(data.total ?? words.length)}` : "";
}

// ---------------------------------------------------------------- stats & health

function renderStats(s) {
  const t = Number(s.server_time);
  if (Number.isFinite(t)) state.serverOffset = t - Date.now() / 1000;
  const st = Number(s.stream_time);
  state.stream = s.stream_time !== null && s.stream_time !== undefined && Number.isFinite(st)
    ? { t: st, at: Date.now() / 1000, replay: s.time_mode === "replay" } : null;
  const chars = Number(s.chars_ingested);
  const lines = Number(s.lines_ingested);
  const measured = s.ingest_rate || {};
  const finite = (v) => v !== null && v !== undefined && Number.isFinite(Number(v));
  const prev = state.lastStats;
  if (finite(measured.chars_per_s)) {
    // measured by the server over its last ~10 s; its history covers the last minutes,
    // so the card is right from the first load and the same in every browser
    $("rate-chars").textContent = fmtCompact(measured.chars_per_s);
    $("rate-lines").textContent = finite(measured.lines_per_s)
      ? fmtCompact(measured.lines_per_s) : "—";
    const history = Array.isArray(measured.history) ? measured.history : [];
    state.rates = history.filter(finite).map(Number).slice(-RATE_POINTS);
    drawRateSpark();
  } else if (prev && Number.isFinite(t) && t > prev.t) {
    // an older service without ingest_rate: the difference between our own polls
    const dt = t - prev.t;
    const rc = Number.isFinite(chars) && Number.isFinite(prev.chars) && chars >= prev.chars
      ? (chars - prev.chars) / dt : null;
    const rl = Number.isFinite(lines) && Number.isFinite(prev.lines) && lines >= prev.lines
      ? (lines - prev.lines) / dt : null;
    $("rate-chars").textContent = rc === null ? "—" : fmtCompact(rc);
    $("rate-lines").textContent = rl === null ? "—" : fmtCompact(rl);
    if (rc !== null) {
      state.rates.push(rc);
      if (state.rates.length > RATE_POINTS) state.rates.shift();
      drawRateSpark();
    }
  }
  if (Number.isFinite(t)) state.lastStats = { t, chars, lines };
  $("total-chars").textContent = fmtCompact(chars);
  $("total-lines").textContent = fmtCompact(lines);
  const pub = s.published || {};
  $("n-words").textContent = fmtInt(pub.words);
  $("n-new").textContent = fmtInt(pub.new_words);
  $("n-tracked").textContent = fmtCompact(s.tracked_candidates);
  $("queue").textContent = fmtInt(s.queue_depth);
  const mem = s.memory || {};
  const rss = fmtBytes(mem.rss_bytes);
  $("memory").textContent = rss ? rss + " RSS" : "memory —";
  renderSources(Array.isArray(s.sources) ? s.sources : []);
}

function renderSources(sources) {
  const ul = $("sources");
  if (!sources.length) {
    ul.replaceChildren(el("li", "muted", "no sources reported"));
    return;
  }
  const shown = sources.slice(0, MAX_SOURCES);
  const items = shown.map((src) => {
    const li = el("li");
    const status = String(src.status ?? "unknown");
    li.appendChild(el("span", "sid", src.id ?? src.path ?? "source"));
    const ok = /^(ok|open|running|tailing|idle|watching|active|eof|rotated)$/i.test(status);
    const bad = /(error|fail|missing|unreadable)/i.test(status);
    li.appendChild(el("span", "st" + (ok ? " ok" : bad ? " bad" : ""), status));
    if (src.error) li.title = String(src.error);
    return li;
  });
  if (sources.length > shown.length) {
    items.push(el("li", "muted", `and ${sources.length - shown.length} more`));
  }
  ul.replaceChildren(...items);
}

function renderHealth(result) {
  const box = $("health");
  const text = $("health-text");
  if (!result) {
    box.dataset.state = "down";
    text.textContent = "service unreachable";
    $("rescore-age").textContent = "—";
    return;
  }
  const { ok, body } = result;
  box.dataset.state = ok ? "ok" : "unhealthy";
  const age = Number(body.last_rescore_age_s);
  const why = body.reason || body.error || body.message;
  text.textContent = ok ? "healthy" : "unhealthy" + (why ? ": " + why : "");
  $("rescore-age").textContent = Number.isFinite(age) ? fmtAge(age) + " ago" : "not yet";
}

// ---------------------------------------------------------------- polling

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store" });
  const body = await resp.json();
  return { ok: resp.ok, status: resp.status, body };
}

function wordsURL() {
  const q = new URLSearchParams({ limit: String(LIMIT), sort: state.sort, history: "1" });
  if (state.newOnly) q.set("new", "true");
  return "/words?" + q.toString();
}

let timer = null;

async function refresh() {
  clearTimeout(timer);
  const [words, stats, health] = await Promise.allSettled([
    getJSON(wordsURL()), getJSON("/stats"), getJSON("/healthz"),
  ]);
  const reachable = [words, stats, health].some((r) => r.status === "fulfilled");
  try {
    if (stats.status === "fulfilled" && stats.value.ok) renderStats(stats.value.body);
    if (words.status === "fulfilled" && words.value.ok) renderWords(words.value.body);
    renderHealth(health.status === "fulfilled" && reachable ? health.value : null);
    $("updated").textContent = reachable
      ? "updated " + new Date().toLocaleTimeString()
      : "cannot reach the service — retrying";
  } catch (err) {
    console.error(err);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function setupControls() {
  for (const button of document.querySelectorAll(".seg button")) {
    button.addEventListener("click", () => {
      state.newOnly = button.dataset.new === "true";
      document.body.classList.toggle("new-only", state.newOnly);
      for (const b of document.querySelectorAll(".seg button")) {
        b.setAttribute("aria-pressed", String(b === button));
      }
      state.seen = null;   // a different list: do not flash every row
      state.ranks = new Map();
      refresh();
    });
  }
  $("sort").addEventListener("change", (e) => {
    state.sort = e.target.value;
    state.ranks = new Map();  // a different order: no movement arrows
    refresh();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupControls();
  refresh();
});
