// The sim inspector page: a client of the feed (top left) and a window on the server
// through /events (top right). Plain JavaScript, no build step, nothing from a CDN.
"use strict";

const LOG_CAP = 2000;        // log entries kept (the oldest go first)
const LOG_ROW_PX = 18;       // the height of a log line (as in inspector.css)
// The page is drawn in one animation frame at a time, and no more often than this: each
// time the DOM changes the browser lays out and repaints (milliseconds in a software-
// rendered page), so drawing every frame a 1,000 msg/s feed makes a change would cost
// a core. Receiving and counting the messages is cheap; drawing them is not.
const DRAW_INTERVAL_MS = 500;
const SERVER_DRAW_INTERVAL_MS = 500;  // the server panel (its status comes twice a second)
const WINDOW_S = 60;         // the timeline shows the last minute
const RATE_WINDOW_S = 5;     // actual rates are averaged over this much time
const SPARK_POINTS = 120;    // status samples kept per stream (one per 0.5 s)
const BACKOFF_BASE_MS = 500, BACKOFF_CAP_MS = 5000, HEALTHY_AFTER_MS = 5000;
const LANES_SHOWN = 8;       // connection swimlanes (the most recent)

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
};

const page = {
  info: null,
  streams: new Map(),   // type -> {name, type, expected, received, gaps, dups, missed, lastSeq, away, row cells}
  subs: null,           // null: every stream; else the Set of subscribed types
  ws: null, wanted: true, attempt: 0, reconnects: 0, openedAt: 0, retryTimer: null,
  pings: new Map(), nextPing: 1,
  paused: false, log: [], pending: [], view: [], logSeq: 0, dirty: false, filter: "", filterStream: "",
  status: null, samples: [], clockOffset: 0,   // server wall time - browser wall time (s)
  faults: [], conns: new Map(), latest: 0,
};

// ------------------------------------------------------------------ start

async function start() {
  const info = await (await fetch("/info")).json();
  page.info = info;
  $("scenario").textContent = info.scenario;
  $("url").textContent = `${info.url} · ${info.mode} · x${info.speed}` + (info.seed != null ? ` · seed ${info.seed}` : "");
  $("control").hidden = info.command !== "run";  // the control endpoint is sim run's
  if (info.command === "record" || info.command === "replay") {
    // What the page sent through a recording proxy would be recorded, and a replay gives
    // each client that connects the next recorded connection (the page would take one
    // from the client under test, and every later client would be shifted by one): it
    // connects only when asked (Connect).
    page.wanted = false;
  }
  if (info.command === "record") $("streams").hidden = true;  // a proxy knows no streams
  $("log-cap").textContent = LOG_CAP;
  for (const s of info.streams) addStream(s);
  $("plan").textContent = info.plan_toml || "# no [[fault]] of the flat shape in this scenario";
  $("plan-left-out").textContent = info.plan_left_out.map((w) => "left out: " + w).join("\n");
  bindControls();
  renderAxis();
  if (page.wanted) connect(); else setState("closed", "not connected");
  openEvents();
  // The time axis moves on when nothing arrives too.
  setInterval(() => { page.statusDirty = true; requestDraw(); }, SERVER_DRAW_INTERVAL_MS);
  requestDraw();
}

function addStream(s) {
  const box = el("input", { type: "checkbox", checked: true, id: "sub-" + s.type });
  box.addEventListener("change", () => setSubscribed(s.type, box.checked));
  const cells = {
    received: el("td", { className: "num" }, "0"),
    gaps: el("td", { className: "num" }, "0"),
    dups: el("td", { className: "num" }, "0"),
    missed: el("td", { className: "num" }, "0"),
    spark: el("td"),
  };
  const spark = sparklineSvg();
  cells.spark.append(spark);
  const row = el("tr", { id: "stream-" + s.type }, el("td", {}, box), el("td", {}, s.name),
    cells.received, cells.gaps, cells.dups, cells.missed, cells.spark);
  $("streams").tBodies[0].append(row);
  page.streams.set(s.type, {
    ...s, received: 0, gaps: 0, dups: 0, missed: 0, lastSeq: null, away: false, cells, box, spark,
  });
  $("log-stream").append(el("option", { value: s.type }, s.type));
}

// ------------------------------------------------------------------ the feed client

function wsUrl() {
  // sim run serves the page its feed in batches (info.feed_query: ?sim_batch=...);
  // replay and the recording proxy, as is.
  const query = (page.info && page.info.feed_query) || "";
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/" + query;
}

function setState(state, text) {
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = text || state;
  $("connect").textContent = page.wanted ? "Disconnect" : "Connect";
}

function connect() {
  clearTimeout(page.retryTimer);
  page.retryTimer = null;
  $("retry-info").textContent = "";
  setState("connecting");
  const ws = new WebSocket(wsUrl());
  page.ws = ws;
  ws.onopen = () => {
    if (page.ws !== ws) return;
    page.openedAt = performance.now();
    // A broadcast's seq goes on while the page is away: what it skips over on the first
    // message is what was missed meanwhile. Elsewhere each connection counts anew.
    const goesOn = page.info.command === "run" && page.info.mode === "broadcast";
    for (const s of page.streams.values()) {
      if (!goesOn) s.lastSeq = null;
      s.away = s.lastSeq !== null;
    }
    setState("open", "connected");
    note("connected to " + wsUrl());
    resubscribe();
  };
  ws.onmessage = (event) => { if (page.ws === ws) received(event.data); };
  ws.onclose = (event) => {
    if (page.ws !== ws) return;
    page.ws = null;
    const what = `closed ${event.code}${event.reason ? " " + event.reason : ""}` +
      (event.wasClean ? "" : " (no close frame)");
    $("close-info").textContent = what;
    note(what);
    if (page.wanted) scheduleReconnect(event); else setState("closed");
  };
}

// Exponential backoff with jitter; reset only after a connection stayed up a while (a
// server that accepts and closes at once must not get a tight loop); a close reason
// carrying retry-after=N is honoured.
function scheduleReconnect(event) {
  if (page.openedAt && performance.now() - page.openedAt >= HEALTHY_AFTER_MS) page.attempt = 0;
  page.openedAt = 0;
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** page.attempt);
  let delay = ceiling / 2 + Math.random() * ceiling / 2;
  const hint = /retry-after=(\d+)/.exec(event.reason || "");
  if (hint) delay = Math.max(delay, Math.min(60, Number(hint[1])) * 1000);
  page.attempt += 1;
  const due = performance.now() + delay;
  setState("waiting", "reconnecting");
  const tick = () => {
    if (!page.retryTimer) return;
    const left = Math.max(0, (due - performance.now()) / 1000);
    $("retry-info").textContent = `retry ${page.attempt} in ${left.toFixed(1)} s`;
  };
  tick();
  page.retryTimer = setTimeout(() => {
    page.reconnects += 1;
    $("reconnects").textContent = page.reconnects;
    connect();
  }, delay);
  const countdown = setInterval(() => (page.retryTimer ? tick() : clearInterval(countdown)), 200);
}

function send(message) {
  if (page.ws && page.ws.readyState === WebSocket.OPEN) {
    page.ws.send(JSON.stringify(message));
    return true;
  }
  return false;
}

function ping() {
  const id = "inspector-" + page.nextPing++;
  if (send({ type: page.info.protocol.ping, id })) page.pings.set(id, performance.now());
  else note("ping: not connected");
}

function setSubscribed(type, on) {
  const all = [...page.streams.keys()];
  if (page.subs === null) page.subs = new Set(all);
  if (on) page.subs.add(type); else page.subs.delete(type);
  // What the server sent while unsubscribed is no gap: seq is tracked anew.
  if (on) page.streams.get(type).lastSeq = null;
  if (page.subs.size === all.length) page.subs = null;
  const p = page.info.protocol;
  send(on ? { type: p.subscribe, streams: [type] } : { type: p.unsubscribe, streams: [type] });
}

// Subscriptions die with a connection: ask again for exactly the active set.
function resubscribe() {
  if (page.subs === null) return;
  const off = [...page.streams.keys()].filter((t) => !page.subs.has(t));
  if (off.length) send({ type: page.info.protocol.unsubscribe, streams: off });
}

function received(text) {
  let message = null;
  try { message = JSON.parse(text); } catch (e) { /* shown as it came */ }
  const type = message && typeof message === "object" ? message.type : undefined;
  if (type === page.info.protocol.pong && page.pings.has(message.id)) {
    const rtt = performance.now() - page.pings.get(message.id);
    page.pings.delete(message.id);
    $("rtt").textContent = rtt.toFixed(1) + " ms";
  }
  const stream = page.streams.get(type);
  if (stream) {
    stream.received += 1;
    const seq = message.seq;
    if (Number.isInteger(seq)) {
      // The first message after a reconnect at or below the last seq: the feed started
      // over (a restarted server), not a duplicate.
      if (stream.away && stream.lastSeq !== null && seq <= stream.lastSeq) stream.lastSeq = null;
      if (stream.lastSeq !== null && seq > stream.lastSeq + 1) {
        if (stream.away) stream.missed += seq - stream.lastSeq - 1;
        else stream.gaps += seq - stream.lastSeq - 1;
      }
      if (stream.lastSeq !== null && seq <= stream.lastSeq) stream.dups += 1;
      stream.lastSeq = Math.max(seq, stream.lastSeq ?? seq);
      stream.away = false;
    }
  }
  addLog({ t: Date.now(), stream: type === undefined ? "(no type)" : String(type), text, sys: !stream });
}

function note(text) {
  addLog({ t: Date.now(), stream: "(page)", text, sys: true });
}

// ------------------------------------------------------------------ the log

function addLog(entry) {
  entry.n = page.logSeq++;
  page.pending.push(entry);
  // Trimmed now and then, not per message: bounded at twice the cap.
  if (page.pending.length >= 2 * LOG_CAP) page.pending.splice(0, page.pending.length - LOG_CAP);
  page.dirty = true;
  requestDraw();
}

function matches(entry) {
  if (page.filterStream && entry.stream !== page.filterStream) return false;
  return !page.filter || entry.text.toLowerCase().includes(page.filter);
}

// The log is a window on page.view (the kept entries the filters let through, oldest
// first, shown newest first): only the lines in view are in the DOM, a fixed set of rows
// reused as it scrolls (row k of the list always shows line k modulo their number). A
// page that put every line in the DOM would have the browser lay out and paint them all
// on each draw: the whole scrollable list is painted ahead, not only what is in view.
const logRows = [];                  // <li>, reused
const shownEntries = new WeakMap();  // log <li> -> the entry it shows (one click listener for all)

function logRow() {
  const row = el("li", {}, el("span", { className: "t" }), el("span", { className: "s" }), el("span"));
  row.hidden = true;
  $("log-rows").append(row);
  return row;
}

function showEntry(row, entry) {
  if (shownEntries.get(row) === entry) return;
  shownEntries.set(row, entry);
  const [t, s, text] = row.children;
  t.textContent = new Date(entry.t).toISOString().slice(11, 23);
  s.textContent = entry.stream;
  text.textContent = entry.text.length > 400 ? entry.text.slice(0, 400) + "…" : entry.text;
  row.className = entry.sys ? "sys" : "";
  row.dataset.stream = entry.stream;
}

function showDetail(entry) {
  const detail = $("log-detail");
  try { detail.textContent = JSON.stringify(JSON.parse(entry.text), null, 2); }
  catch (e) { detail.textContent = entry.text; }
  detail.hidden = false;
}

// One batch per draw (see draw()): whatever arrived since the last draw goes in at once.
function renderLog(rebuild) {
  const list = $("log");
  const top = list.scrollTop;  // read before anything is written: no forced layout
  let fresh = [];
  if (!page.paused && page.pending.length) {
    fresh = page.pending;
    page.pending = [];
    page.log.push(...fresh);
    if (page.log.length > LOG_CAP) page.log.splice(0, page.log.length - LOG_CAP);
  }
  let added = 0, at = top;
  if (rebuild) {
    page.view = page.log.filter(matches);
    at = 0;  // the newest first
  } else if (fresh.length) {
    const before = page.view.length;
    for (const entry of fresh) if (matches(entry)) page.view.push(entry);
    added = page.view.length - before;
    // What left the log leaves the view (both are oldest first).
    const oldest = page.log.length ? page.log[0].n : page.logSeq;
    let gone = 0;
    while (gone < page.view.length && page.view[gone].n < oldest) gone++;
    if (gone) page.view.splice(0, gone);
  }
  setStyle($("log-rows"), "height", page.view.length * LOG_ROW_PX + "px");
  // Whoever scrolled down to read keeps the same lines in view as new ones come on top;
  // at the top, the newest stay in view.
  if (top > 0 && added) at = top + added * LOG_ROW_PX;
  if (at !== top) { list.scrollTop = at; at = list.scrollTop; }  // (as far as it goes)
  placeLogRows(at);
  setText($("log-count"), page.log.length);
}

// The lines in view (from scroll position `top`) into the rows.
function placeLogRows(top) {
  const list = $("log");
  const n = page.view.length;
  const count = Math.ceil(list.clientHeight / LOG_ROW_PX) + 1;
  while (logRows.length < count) logRows.push(logRow());
  const first = Math.floor(top / LOG_ROW_PX);
  for (let i = first; i < first + logRows.length; i++) {
    const row = logRows[i % logRows.length];
    if (i >= n) {
      if (!row.hidden) { row.hidden = true; shownEntries.delete(row); }
      continue;
    }
    showEntry(row, page.view[n - 1 - i]);
    const y = i * LOG_ROW_PX + "px";
    if (row.style.top !== y) row.style.top = y;
    if (row.hidden) row.hidden = false;
  }
}

// ------------------------------------------------------------------ the server, via /events

function openEvents() {
  const source = new EventSource("/events");
  source.onopen = () => { $("server-state").textContent = "server: watching /events"; };
  source.onerror = () => { $("server-state").textContent = "server: /events lost, retrying"; };
  source.addEventListener("status", (e) => onStatus(JSON.parse(e.data)));
  source.addEventListener("log", (e) => onServerLog(JSON.parse(e.data)));
}

// Server wall time now; never before the newest event seen (the status that set the
// offset may be older than an event).
function serverNow() { return Math.max(Date.now() / 1000 + page.clockOffset, page.latest); }

function onStatus(status) {
  page.status = status;
  page.clockOffset = status.time - Date.now() / 1000;
  page.samples.push({ t: status.uptime_s, counts: status.messages_by_stream, open: status.connections_open });
  if (page.samples.length > SPARK_POINTS + 20) page.samples.shift();
  page.statusDirty = true;
  requestDraw();
}

function onServerLog(batch) {
  for (const e of batch.events) {
    page.latest = Math.max(page.latest, e.time);
    if (e.event === "fault") {
      const speed = page.info ? page.info.speed : 1;
      const end = e.end_ns != null ? e.time + (e.end_ns - e.t_ns) / 1e9 / speed : null;
      // A fault injected into messages comes as one event per 0.1 s with a count.
      page.faults.push({ time: e.time, end, kind: e.injected, conn: e.conn, name: e.fault, source: e.source, count: e.count || 1 });
      if (page.faults.length > 1000) page.faults.shift();
    } else if (e.event === "connected") {
      page.conns.set(e.conn, { conn: e.conn, start: e.time, end: null, code: null, remote: e.remote });
    } else if (e.event === "disconnected") {
      const c = page.conns.get(e.conn) || { conn: e.conn, start: e.time };
      Object.assign(c, { end: e.time, code: e.code, reason: e.reason, by: e.by, sent: e.sent, dropped: e.dropped });
      page.conns.set(e.conn, c);
    }
    if (["fault", "connected", "disconnected", "rejected", "warning", "slow_consumer"].includes(e.event)) {
      const { event, time, ...rest } = e;
      addLog({ t: time * 1000, stream: "(server)", text: JSON.stringify({ event, ...rest }), sys: true });
    }
  }
  while (page.conns.size > 200) page.conns.delete(page.conns.keys().next().value);
  page.statusDirty = true;
  requestDraw();
}

// The server panel, twice a second: the nodes drawn last time are kept and only what
// changed is written (each change costs the browser a layout and a repaint of its area).
function renderServer() {
  const status = page.status;
  if (!status) return;
  renderCounters([
    ["connections open", status.connections_open], ["connections total", status.connections_total],
    ["frames sent", status.frames_sent], ["frames dropped", status.frames_dropped],
    ["lateness p50", fmtMs(status.lateness_p50_ms)], ["lateness p99", fmtMs(status.lateness_p99_ms)],
    ["rejected", status.rejected], ["slow closed", status.slow_closed],
    ["client errors", status.client_errors],
    ["gaps (page)", sum((s) => s.gaps)], ["duplicates (page)", sum((s) => s.dups)],
    ["missed while away (page)", sum((s) => s.missed)],
    ["virtual time", status.virtual_s.toFixed(1) + " s"],
    ...Object.entries(status.faults_by_kind).map(([k, n]) => ["fault " + k, n]),
    ...Object.entries(status.relayed || {}).map(([k, n]) => ["messages " + k, n]),
  ]);
  for (const s of page.streams.values()) drawSparkline(s);
  renderTimeline();
  renderConnections(status);
  if (status.replay) renderReplay(status.replay);
}

function renderCounters(counters) {
  const box = $("counters");
  const labels = counters.map(([label]) => label).join("\n");
  if (box.dataset.labels !== labels) {  // a new kind of fault, say
    box.dataset.labels = labels;
    box.replaceChildren(...counters.map(([label]) =>
      el("div", { className: "counter" }, el("b"), el("span", {}, label))));
  }
  counters.forEach(([, value], i) => setText(box.children[i].firstChild, value));
}

// sim replay: the recorded connection's pushes as ticks, and where the client is now.
// The bars (and their ticks) are made again only when the clients or their recordings
// change; otherwise only the marker and the figures move.
function renderReplay(positions) {
  $("replay").hidden = false;
  const box = $("replay-lanes");
  const key = positions.map((p) => `${p.conn}:${p.recorded_conn}:${p.round}`).join(" ");
  if (box.dataset.key !== key) {
    box.dataset.key = key;
    const rows = [];
    for (const p of positions) {
      const recorded = page.info.recorded[String(p.recorded_conn)];
      const span = Math.max(1e-9, p.duration_s);
      const bar = el("div", { className: "replay-bar", id: "replay-" + p.conn });
      for (const t of recorded ? recorded.pushes : []) {
        const tick = el("div", { className: "push" });
        tick.style.left = (100 * t / span) + "%";
        bar.append(tick);
      }
      bar.append(el("div", { className: "position" }));
      rows.push(
        el("div", {}, `conn ${p.conn} ← recorded ${p.recorded_conn}` + (p.round ? ` (round ${p.round + 1})` : "")),
        bar, el("div", { className: "muted" }));
    }
    box.replaceChildren(...rows);
  }
  positions.forEach((p, i) => {
    const at = Math.min(1, p.position_s / Math.max(1e-9, p.duration_s));
    const marker = box.children[3 * i + 1].lastElementChild;
    setStyle(marker, "left", (100 * at).toFixed(2) + "%");
    setAttr(marker, "data-fraction", at.toFixed(4));
    setText(box.children[3 * i + 2], `${Math.min(p.position_s, p.duration_s).toFixed(1)} / ${p.duration_s.toFixed(1)} s`);
  });
}

// The page's own counts, in the same frame as the log lines they count.
function renderStreamCounts() {
  for (const s of page.streams.values()) {
    setText(s.cells.received, s.received);
    setText(s.cells.gaps, s.gaps);
    setText(s.cells.missed, s.missed);
    setText(s.cells.dups, s.dups);
  }
}

// Unchanged text, style or attribute is left alone: setting it anyway can cost a layout
// and a repaint.
function setText(node, value) {
  const text = String(value);
  if (node.textContent !== text) node.textContent = text;
}

function setStyle(node, property, value) {
  if (node.style[property] !== value) node.style[property] = value;
}

function setAttr(node, name, value) {
  const text = String(value);
  if (node.getAttribute(name) !== text) node.setAttribute(name, text);
}

function sum(f) { let n = 0; for (const s of page.streams.values()) n += f(s); return n; }
function fmtMs(ms) { return ms == null ? "–" : ms.toFixed(2) + " ms"; }

const SVG = "http://www.w3.org/2000/svg";

// A stream's sparkline: one SVG made once (addStream), its lines moved on each status.
function sparklineSvg() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 200 24");
  svg.setAttribute("preserveAspectRatio", "none");  // stretched to the cell's width
  for (const [tag, cls] of [["line", "exp"], ["polyline", "act"], ["title", ""]]) {
    const node = document.createElementNS(SVG, tag);
    if (cls) node.setAttribute("class", cls);
    svg.append(node);
  }
  return svg;
}

// Expected (dashed) against actual (solid) msg/s of one stream, from the server's counts.
function drawSparkline(s) {
  const samples = page.samples.slice(-SPARK_POINTS);
  const rates = [], expected = [];
  for (let i = 1; i < samples.length; i++) {
    let j = i - 1;
    while (j > 0 && samples[i].t - samples[j].t < RATE_WINDOW_S) j--;
    const dt = samples[i].t - samples[j].t;
    if (dt < RATE_WINDOW_S * 0.9) continue;  // too short a span for a rate yet
    const n = (samples[i].counts[s.name] || 0) - (samples[j].counts[s.name] || 0);
    rates.push(dt > 0 ? n / dt : 0);
    expected.push(s.expected_per_s * (page.info.per_connection ? samples[i].open : 1));
  }
  const exp = expected.length ? expected[expected.length - 1]
    : s.expected_per_s * (page.info.per_connection ? (page.status ? page.status.connections_open : 0) : 1);
  const top = Math.max(1e-9, ...rates, exp) * 1.15;
  const y = (v) => (23 - 22 * v / top).toFixed(1);
  const svg = s.spark;
  const [flat, line, title] = svg.children;
  // Expected: the scenario's rate now, across the whole width (dashed).
  for (const [k, v] of [["x1", 0], ["x2", 200], ["y1", y(exp)], ["y2", y(exp)]]) setAttr(flat, k, v);
  // Actual: one point per status sample, the newest on the right.
  setAttr(line, "points", rates.map((v, i) =>
    `${(200 * (i + 1 + SPARK_POINTS - rates.length) / SPARK_POINTS).toFixed(1)},${y(v)}`).join(" "));
  const last = rates.length ? rates[rates.length - 1] : 0;
  setText(title, `${s.name}: expected ${exp.toFixed(2)} msg/s, actual ${last.toFixed(2)} msg/s`);
  setAttr(svg, "data-expected", exp);
  setAttr(svg, "data-actual", last);
}

function xOf(time, now) { return Math.max(0, Math.min(100, 100 - (now - time) / WINDOW_S * 100)); }
function pct(x) { return x.toFixed(2) + "%"; }

// The children of `parent` made to show `marks` ({className, left, width, title, kind}),
// reusing the ones there.
function syncMarks(parent, marks) {
  while (parent.children.length > marks.length) parent.lastElementChild.remove();
  marks.forEach((m, i) => {
    const node = parent.children[i] || parent.appendChild(document.createElement("div"));
    if (node.className !== m.className) node.className = m.className;
    setStyle(node, "left", m.left);
    setStyle(node, "width", m.width || "");
    if (node.title !== m.title) node.title = m.title;
    if (m.kind !== undefined && node.dataset.kind !== m.kind) node.dataset.kind = m.kind;
  });
}

// Fault lane and connection swimlanes on one time axis (the last WINDOW_S seconds).
function renderTimeline() {
  const now = serverNow();
  syncMarks($("fault-lane"), page.faults.filter((f) => (f.end ?? f.time) >= now - WINDOW_S).map((f) => {
    const left = xOf(f.time, now);
    return {
      className: "fault-mark" + (f.end ? " span" : ""),
      left: pct(left),
      width: f.end ? pct(Math.max(0.5, xOf(f.end, now) - left)) : "",
      title: `${f.kind}${f.count > 1 ? " ×" + f.count : ""} (${f.name}${f.source ? ", " + f.source : ""})` + (f.conn == null ? " server-wide" : " conn " + f.conn),
      kind: f.kind,
    };
  }));
  const recent = [...page.conns.values()].filter((c) => (c.end ?? now) >= now - WINDOW_S).slice(-LANES_SHOWN);
  const lanes = $("swimlanes");
  while (lanes.children.length > 2 * recent.length) lanes.lastElementChild.remove();
  recent.forEach((c, i) => {
    if (!lanes.children[2 * i]) lanes.append(el("div", { className: "lane-label" }), el("div", { className: "lane" }));
    const label = lanes.children[2 * i], bar = lanes.children[2 * i + 1];
    setText(label, "conn " + c.conn);
    if (bar.id !== "lane-" + c.conn) bar.id = "lane-" + c.conn;
    const left = xOf(c.start, now);
    const marks = [{
      className: "conn-span" + (c.end ? "" : " open"),
      left: pct(left),
      width: pct(Math.max(0.5, xOf(c.end ?? now, now) - left)),
      title: c.end ? `conn ${c.conn}: closed ${c.code} ${c.reason || ""} by ${c.by}` : `conn ${c.conn}: open`,
    }];
    if (c.end) marks.push({ className: "conn-end", left: pct(xOf(c.end, now)), title: `close ${c.code}` });
    for (const f of page.faults) {
      if (f.conn !== c.conn || f.time < now - WINDOW_S) continue;
      marks.push({ className: "fault-mark", left: pct(xOf(f.time, now)), title: f.kind, kind: f.kind });
    }
    syncMarks(bar, marks);
  });
}

function renderAxis() {
  $("axis").replaceChildren(...[60, 45, 30, 15, 0].map((ago) => {
    const tick = el("span", {}, ago ? `-${ago}s` : "now");
    tick.style.left = (100 - ago / WINDOW_S * 100) + "%";
    return tick;
  }));
}

// The newest connections, one row each (the rows are kept and rewritten in place).
function renderConnections(status) {
  const open = new Map(status.connections.map((c) => [c.conn, c]));
  const all = [...page.conns.values()].slice(-20).reverse();
  for (const c of open.values()) if (!page.conns.has(c.conn)) all.unshift({ conn: c.conn });
  const body = $("connections").tBodies[0];
  while (body.rows.length > all.length) body.lastElementChild.remove();
  all.forEach((c, i) => {
    const row = body.rows[i] || body.appendChild(connectionRow());
    const live = open.get(c.conn);
    if (row.id !== "conn-" + c.conn) { row.id = "conn-" + c.conn; row.dataset.conn = c.conn; }
    const texts = [
      String(c.conn),
      live ? (live.stalled ? "stalled" : live.state) : c.end ? "closed" : "open",
      (live && live.remote) || c.remote || "",
      String((live ? live.sent : c.sent) ?? ""),
      String((live ? live.dropped : c.dropped) ?? ""),
      String((live && live.pending_bytes) ?? ""),
      c.code != null ? `${c.code} ${c.reason || ""} (${c.by})` : "",
    ];
    texts.forEach((text, k) => setText(row.cells[k], text));
    const button = row.cells[7].firstChild;
    const canClose = Boolean(live) && page.info.command === "run";
    if (button.hidden === canClose) button.hidden = !canClose;
  });
  const left = status.connections_left_out;
  const more = $("connections-left-out");
  setText(more, left ? `and ${left} more open connections (older)` : "");
  if (more.hidden === Boolean(left)) more.hidden = !left;
}

function connectionRow() {
  const button = el("button", { textContent: "disconnect" });
  button.addEventListener("click", () =>
    control("/control/disconnect", { conn: Number(button.closest("tr").dataset.conn) }));
  return el("tr", {}, el("td"), el("td"), el("td"), el("td", { className: "num" }),
    el("td", { className: "num" }), el("td", { className: "num" }), el("td"), el("td", {}, button));
}

// ------------------------------------------------------------------ controls

async function control(path, body) {
  const out = $("control-result");
  try {
    const response = await fetch(path, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    out.textContent = `${response.status} ${JSON.stringify(await response.json(), null, 2)}`;
  } catch (e) {
    out.textContent = "failed: " + e;
  }
}

async function copyPlan() {
  const text = $("plan").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {  // no clipboard permission: select it for Ctrl+C
    const range = document.createRange();
    range.selectNodeContents($("plan"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("copy-result").textContent = "selected: press Ctrl+C";
    return;
  }
  $("copy-result").textContent = "copied";
}

function bindControls() {
  $("connect").addEventListener("click", () => {
    page.wanted = !page.wanted;
    if (page.wanted) connect();
    else {
      clearTimeout(page.retryTimer);
      page.retryTimer = null;
      $("retry-info").textContent = "";
      if (page.ws) page.ws.close(1000, "closed from the inspector"); else setState("closed");
    }
  });
  $("reconnect").addEventListener("click", () => {
    page.wanted = true;
    const old = page.ws;
    page.ws = null;
    if (old) old.close(1000, "reconnect from the inspector");
    connect();
  });
  $("ping").addEventListener("click", ping);
  $("pause").addEventListener("click", () => {
    page.paused = !page.paused;
    $("pause").textContent = page.paused ? "Resume" : "Pause";
    if (!page.paused) renderLog(true);
  });
  $("log").addEventListener("scroll", () => placeLogRows($("log").scrollTop));
  $("log").addEventListener("click", (event) => {
    const item = event.target.closest("li");
    if (item && shownEntries.has(item)) showDetail(shownEntries.get(item));
  });
  $("clear").addEventListener("click", () => { page.log = []; page.pending = []; renderLog(true); });
  $("log-filter").addEventListener("input", (e) => { page.filter = e.target.value.toLowerCase(); renderLog(true); });
  $("log-stream").addEventListener("change", (e) => { page.filterStream = e.target.value; renderLog(true); });
  for (const name of ["(page)", "(server)"]) $("log-stream").append(el("option", { value: name }, name));
  $("copy-plan").addEventListener("click", copyPlan);
  $("disconnect-all").addEventListener("click", () => control("/control/disconnect", {}));
  for (const button of document.querySelectorAll("button.preset")) {
    button.addEventListener("click", () => control("/control/faults", JSON.parse(button.dataset.fault)));
  }
  $("trigger").addEventListener("click", () => {
    let body;
    try { body = JSON.parse($("fault-json").value); }
    catch (e) { $("control-result").textContent = "not JSON: " + e.message; return; }
    control("/control/faults", body);
  });
}

// Drawing: whatever changed since the last draw, in one batch, in one animation frame
// (never two draws in a frame): the log and the page's counts at most every
// DRAW_INTERVAL_MS, the server panel at most every SERVER_DRAW_INTERVAL_MS and in the
// same frames as the log when both change; nothing is drawn, and no frame asked for,
// while nothing changes.
const drawing = { pending: false, last: -Infinity, lastServer: -Infinity };
// The server panel is drawn with the log once this much of its interval has passed (its
// status may come a little early, and a frame of its own would cost as much as the log's).
const SERVER_DRAW_SLACK_MS = DRAW_INTERVAL_MS / 2;

function requestDraw() {
  if (drawing.pending) return;
  // While the log changes, the server panel goes with it; else at its own pace.
  const due = page.dirty ? drawing.last + DRAW_INTERVAL_MS
    : page.statusDirty ? drawing.lastServer + SERVER_DRAW_INTERVAL_MS
    : null;
  if (due === null) return;
  drawing.pending = true;
  const wait = due - performance.now();
  if (wait > 0) setTimeout(() => requestAnimationFrame(draw), wait);
  else requestAnimationFrame(draw);
}

function draw(now) {
  drawing.pending = false;
  if (page.dirty) {
    page.dirty = false;
    drawing.last = now;
    renderLog(false);
    renderStreamCounts();
  }
  if (page.statusDirty && now - drawing.lastServer >= SERVER_DRAW_INTERVAL_MS - SERVER_DRAW_SLACK_MS) {
    page.statusDirty = false;
    drawing.lastServer = now;
    renderServer();
  }
  requestDraw();  // what is still to draw, at its own pace
}

start();
