// plantwatch's built-in dashboard: plain JavaScript over the HTTP API, no build step, no CDN.
//
// Every value from the service (asset and sensor names come from MQTT publishers) is put on the page
// as text (textContent, SVG attributes), never as HTML, so a hostile name cannot run a script; the
// page's Content-Security-Policy allows only this file's script anyway.
"use strict";

const KEY_ITEM = "plantwatch-key"; // sessionStorage: the key lives as long as the browser tab
const REFRESH_MS = 5000;
const READING_ROWS = 720; // the service keeps this many rows of sensor values per asset
const MAX_NINES = 6; // the chart's top: a probability of 0.999999
const MAX_STRIPS = 8; // sensors drawn under the probability chart
const STRIP = 46; // their height each, in the chart's units

let selected = null; // the asset whose chart is shown
let busy = false; // a refresh is running

// -- talking to the API ------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
  }
}

async function api(path, body) {
  const headers = {};
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const options = { headers };
  if (body !== undefined) {
    options.method = "POST";
    headers["Content-Type"] = "application/json"; // the API refuses a POST without it
    options.body = JSON.stringify(body);
  }
  const resp = await fetch(path, options);
  if (!resp.ok) {
    const problem = await resp.json().catch(() => ({}));
    const detail = typeof problem.detail === "string" ? problem.detail : resp.statusText;
    throw new ApiError(resp.status, detail);
  }
  return resp.json();
}

// -- building the page ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function fill(tableId, rows, emptyText, columns) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  if (rows.length === 0) {
    body.append(el("tr", {}, el("td", { class: "empty", colspan: String(columns) }, emptyText)));
  }
  for (const row of rows) body.append(row);
}

function badge(text, kind = text) {
  return el("span", { class: `badge ${kind}` }, text);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function number(value, digits = 3) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function reading(value) {
  // four significant digits, as the service's log gives them: a vibration spread of 0.000188 with its
  // range 0.000150 to 0.000413 must not read "0.00, expected 0.00 to 0.00"
  return value === null || value === undefined ? "–" : String(Number(Number(value).toPrecision(4)));
}

function view(feature) {
  // which view of the sensor is off, unless it is the reading or its level: "spread high" for a sharp dip
  return !feature || feature === "raw" || feature === "level" ? "" : ` ${feature}`;
}

function probability(p) {
  // enough digits to tell 0.9999 from 0.99999: the alarm level of a week's false-alert target is near 1
  if (p === null || p === undefined) return "–";
  return Number(p).toFixed(Math.min(7, Math.max(3, Math.floor(nines(p)) + 2)));
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const hours = seconds / 3600;
  return hours >= 48 ? `${(hours / 24).toFixed(1)} d` : `${hours.toFixed(1)} h`;
}

function drivers(sensors) {
  if (!sensors || sensors.length === 0) return "–";
  return el(
    "ul",
    { class: "drivers" },
    ...sensors.slice(0, 3).map((s) =>
      el(
        "li",
        {},
        `${s.sensor}${view(s.feature)} ${s.direction} (${Math.round(100 * s.share)} %): ${reading(s.value)}, ` +
          `expected ${reading(s.expected_low)} to ${reading(s.expected_high)}`,
      ),
    ),
  );
}

// -- the sections --------------------------------------------------------------------------------

async function showAlerts() {
  // What waits for the shift: open alerts, and those that resolved by themselves unacknowledged.
  const [open, unacknowledged] = await Promise.all([
    api("/alerts?state=open&limit=200"),
    api("/alerts?acknowledged=false&limit=200"),
  ]);
  const byId = new Map([...open, ...unacknowledged].map((a) => [a.id, a]));
  const alerts = [...byId.values()].sort((a, b) => b.started_at.localeCompare(a.started_at));
  fill("alerts", alerts.map(alertRow), "No alert waits.", 8);
}

function alertRow(alert) {
  const state = [badge(alert.state)];
  if (alert.needs_acknowledgement) state.push(" ", badge("unacknowledged"));
  if (alert.shelved) state.push(" ", badge("shelved"));
  const act = (label, path, body) =>
    el("button", { type: "button", "data-action": label, onclick: () => perform(alert.id, path, body) }, label);
  const actions = [];
  if (alert.needs_acknowledgement) actions.push(act("Acknowledge", "ack", {}));
  if (!alert.shelved) actions.push(act("Shelve 2 h", "shelve", { hours: 2, reason: "shelved from the dashboard" }));
  actions.push(act("False alarm", "feedback", { verdict: "false_alarm" }));
  actions.push(act("True fault", "feedback", { verdict: "true_fault" }));
  return el(
    "tr",
    { "data-alert-id": String(alert.id) },
    el("td", {}, String(alert.id)),
    el("td", {}, alert.asset),
    el("td", {}, alert.kind),
    el("td", {}, badge(alert.severity)),
    el("td", {}, ...state),
    el("td", {}, when(alert.started_at)),
    el("td", {}, drivers(alert.top_sensors)),
    el("td", { class: "actions" }, ...actions),
  );
}

async function perform(alertId, action, body) {
  try {
    await api(`/alerts/${alertId}/${action}`, body);
    say("");
  } catch (err) {
    say(err.status === 403 ? `${err.message} (acting on alerts needs a key with scope operate)` : err.message);
  }
  await refresh();
}

async function showAssets() {
  const assets = await api("/assets");
  if (selected === null && assets.length > 0) selected = assets[0].asset;
  fill("assets", assets.map(assetRow), "No asset has sent readings since the service started.", 7);
  return assets.find((a) => a.asset === selected) || null;
}

function assetRow(asset) {
  const row = el(
    "tr",
    { "data-asset": asset.asset, onclick: () => select(asset.asset) },
    el("td", {}, asset.asset),
    el("td", {}, badge(asset.state)),
    el("td", {}, asset.learned ? "learned" : `${asset.baseline_rows_seen} of ${asset.baseline_rows} rows`),
    el("td", {}, probability(asset.probability)),
    el("td", {}, probability(asset.alarm_enter)),
    el("td", {}, when(asset.last_row_at)),
    el("td", {}, asset.state === "alarm" ? drivers(asset.top_sensors) : "–"),
  );
  if (asset.asset === selected) row.classList.add("selected");
  return row;
}

async function select(asset) {
  selected = asset;
  await refresh();
}

async function showMaintenance() {
  const entries = await api("/maintenance");
  const rows = entries.map((m) =>
    el(
      "tr",
      {},
      el("td", {}, m.asset),
      el("td", {}, number(m.health_index, 2)),
      el("td", {}, number(m.trend, 4)),
      el("td", {}, band(m.time_to_threshold_s, m.time_to_threshold_low_s, m.time_to_threshold_high_s)),
      el("td", {}, band(m.rul_s, m.rul_low_s, m.rul_high_s)),
      el("td", {}, regime(m.regime)),
      el("td", {}, m.model),
    ),
  );
  fill("maintenance", rows, "No health trend yet.", 7);
}

// The regime the health index was judged in: its number and the settings at its centre.
function regime(r) {
  if (!r) return "–";
  const settings = Object.entries(r.settings).map(([name, value]) => `${name} ${number(value, 2)}`);
  return `${r.id} (${settings.join(", ")})`;
}

function band(value, low, high) {
  if (value === null || value === undefined) return "–";
  const range = low !== null && high !== null && low !== undefined && high !== undefined;
  return range ? `${duration(value)} (${duration(low)} to ${duration(high)})` : duration(value);
}

// -- the chart: probability in nines, the alarm level, alert spans ------------------------------

const SVG = "http://www.w3.org/2000/svg";
const BOX = { left: 150, right: 890, top: 10, bottom: 230 }; // the left margin holds the sensors' names

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function chartRows() {
  return Number(document.getElementById("window").value); // the newest rows drawn: the chosen window
}

function nines(p) {
  // 0.9 -> 1, 0.99 -> 2 ...: the calibrated probabilities that matter all lie close to 1
  return Math.min(MAX_NINES, -Math.log10(Math.max(1 - p, 10 ** -MAX_NINES)));
}

async function showChart(asset) {
  const section = document.getElementById("chart-section");
  if (asset === null) {
    section.hidden = true;
    return;
  }
  const name = encodeURIComponent(asset.asset);
  const [scores, alerts, readings] = await Promise.all([
    api(`/assets/${name}/scores?limit=${chartRows()}`),
    api(`/alerts?asset=${name}&limit=50`),
    api(`/assets/${name}/readings?limit=${Math.min(chartRows(), READING_ROWS)}`),
  ]);
  section.hidden = false;
  document.getElementById("chart-title").textContent = `${asset.asset}: anomaly probability`;
  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const strips = document.getElementById("sensors");
  strips.replaceChildren();
  const points = scores.points.filter((p) => p.probability !== null);
  if (points.length < 2) {
    chart.append(svg("text", { x: BOX.left, y: 120 }, "No scored rows yet: the baseline is being learned."));
    return;
  }
  const t0 = Date.parse(points[0].at);
  const t1 = Date.parse(points[points.length - 1].at);
  const x = (ms) => BOX.left + ((ms - t0) / Math.max(t1 - t0, 1)) * (BOX.right - BOX.left);
  const y = (p) => BOX.bottom - (nines(p) / MAX_NINES) * (BOX.bottom - BOX.top);
  for (let n = 0; n <= MAX_NINES; n += 1) {
    const level = n === 0 ? 0 : 1 - 10 ** -n;
    chart.append(svg("line", { class: "grid", x1: BOX.left, x2: BOX.right, y1: y(level), y2: y(level) }));
    chart.append(svg("text", { x: BOX.left - 6, y: y(level) + 4, "text-anchor": "end" }, n === 0 ? "0" : level.toFixed(n)));
  }
  shadeAlerts(chart, alerts, t0, t1, x, BOX.top, BOX.bottom - BOX.top);
  const at = (p) => x(Date.parse(p.at));
  const path = points.map((p, i) => `${i ? "L" : "M"}${at(p).toFixed(1)},${y(p.probability).toFixed(1)}`);
  chart.append(svg("path", { class: "line", d: path.join("") }));
  for (const p of points.filter((q) => q.anomaly)) {
    chart.append(svg("circle", { class: "point", cx: at(p), cy: y(p.probability), r: 2 }));
  }
  if (asset.alarm_enter !== null) {
    const level = y(asset.alarm_enter);
    chart.append(svg("line", { class: "level", x1: BOX.left, x2: BOX.right, y1: level, y2: level }));
  }
  chart.append(svg("text", { x: BOX.left, y: 252 }, new Date(t0).toLocaleString()));
  chart.append(svg("text", { x: BOX.right, y: 252, "text-anchor": "end" }, new Date(t1).toLocaleString()));
  // The sensors driving the alarm now, else those of the asset's latest alert, come first.
  const top = asset.top_sensors && asset.top_sensors.length ? asset.top_sensors : alerts[0]?.top_sensors || [];
  drawSensors(strips, readings, alerts, t0, t1, x, top);
}

function shadeAlerts(target, alerts, t0, t1, x, y0, height) {
  // Each alert's span within [t0, t1], on the chart and on every sensor strip alike.
  for (const alert of alerts) {
    const start = Math.max(Date.parse(alert.started_at), t0);
    const end = Math.min(alert.resolved_at ? Date.parse(alert.resolved_at) : t1, t1);
    if (end < t0 || start > t1) continue;
    target.append(svg("rect", { class: "span", x: x(start), y: y0, width: Math.max(x(end) - x(start), 2), height }));
  }
}

function drawSensors(strips, readings, alerts, t0, t1, x, top) {
  // One strip per sensor (the ones driving an alarm first), each scaled to its own range, over the
  // probability chart's time span, with the same alert shading.
  const named = top.map((s) => s.sensor);
  const order = [...readings.sensors.keys()].sort(
    (a, b) => rank(named, readings.sensors[a]) - rank(named, readings.sensors[b]) || a - b,
  );
  const shown = order.slice(0, MAX_STRIPS);
  const rows = readings.points.filter((p) => Date.parse(p.at) >= t0 && Date.parse(p.at) <= t1);
  strips.setAttribute("viewBox", `0 0 900 ${STRIP * shown.length + 4}`);
  shown.forEach((column, k) => {
    const y0 = k * STRIP + 2;
    const values = rows.map((p) => p.values[column]).filter((v) => v !== null);
    const low = Math.min(...values);
    const high = Math.max(...values);
    const y = (v) => y0 + STRIP - 6 - ((v - low) / Math.max(high - low, 1e-12)) * (STRIP - 12);
    strips.append(svg("rect", { class: "strip", x: BOX.left, y: y0, width: BOX.right - BOX.left, height: STRIP - 4 }));
    shadeAlerts(strips, alerts, t0, t1, x, y0, STRIP - 4);
    const path = [];
    for (const p of rows) {
      const v = p.values[column];
      if (v !== null) path.push(`${path.length ? "L" : "M"}${x(Date.parse(p.at)).toFixed(1)},${y(v).toFixed(1)}`);
    }
    strips.append(svg("path", { class: "line", d: path.join("") }));
    const label = { x: BOX.left - 6, "text-anchor": "end" };
    strips.append(svg("text", { ...label, y: y0 + 16 }, readings.sensors[column]));
    if (values.length) strips.append(svg("text", { ...label, y: y0 + 30 }, `${reading(low)} to ${reading(high)}`));
  });
}

function rank(named, sensor) {
  const i = named.indexOf(sensor);
  return i < 0 ? named.length : i;
}

// -- refreshing ----------------------------------------------------------------------------------

function say(text) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.hidden = !text;
}

async function showStatus() {
  const status = document.getElementById("status");
  try {
    const health = await api("/healthz");
    status.textContent = health.status;
    status.className = `status ${health.status}`;
  } catch (err) {
    // /healthz answers 503 while degraded: still a status, not a failure of the page
    status.textContent = err.status === 503 ? "degraded" : "unreachable";
    status.className = "status error";
  }
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    await showStatus();
    const [asset] = await Promise.all([showAssets(), showAlerts(), showMaintenance()]);
    await showChart(asset);
    document.getElementById("refreshed").textContent = `last ${new Date().toLocaleTimeString()}`;
    if (document.getElementById("message").dataset.kind === "key") say("");
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      say(`${err.message}. Enter an API key with scope read (operate to act on alerts).`);
      document.getElementById("message").dataset.kind = "key";
    } else {
      say(`Could not refresh: ${err.message}`);
    }
  } finally {
    busy = false;
  }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("key");
  sessionStorage.setItem(KEY_ITEM, input.value.trim());
  input.value = "";
  refresh();
});
document.getElementById("window").addEventListener("change", () => refresh());
document.getElementById("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_ITEM);
  refresh();
});
refresh();
setInterval(refresh, REFRESH_MS);
