// The detection view. Everything it shows comes from the detection service's JSON API and is
// inserted as text (textContent / createElement) or drawn on a canvas, never as HTML: service
// names, signals, scenario ids and anomaly types are strings the data or a peer chose.
"use strict";

(() => {
  const REFRESH_MS = 30000;
  const CHART_HEIGHT = 170;
  // The features bucket width until /api/signals says otherwise (FEATURES_BUCKET_SECONDS).
  const DEFAULT_BUCKET_SECONDS = 10;
  const OPEN_EVENTS_LIMIT = 200;
  const EVENT_FILL = "rgba(230, 126, 34, 0.28)";
  const EVENT_EDGE = "rgba(178, 84, 8, 0.95)";
  const TRUTH_FILL = "rgba(111, 66, 193, 0.18)";
  const TRUTH_TEXT = "rgba(76, 38, 150, 0.95)";
  const SEVERITIES = new Set(["low", "medium", "high", "critical"]);
  const NO_SCOREBOARD = "no scoreboard yet: run python -m benchmarks.detection --publish";

  const $ = (id) => document.getElementById(id);
  const state = {
    services: new Map(), plots: [], events: [], windows: [], range: [0, 1], timer: null,
    bucketSeconds: DEFAULT_BUCKET_SECONDS,
  };

  // --- DOM helpers ------------------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "href") node.setAttribute("href", value);
      else if (key === "title") node.title = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function fillTable(table, rows, emptyText) {
    const body = table.tBodies[0];
    clear(body);
    if (!rows.length) {
      const columns = table.tHead.rows[0].cells.length;
      const td = el("td", { class: "empty", text: emptyText });
      td.colSpan = columns;
      body.append(el("tr", {}, td));
      return;
    }
    body.append(...rows);
  }

  function fixed(value, digits) {
    return value === null || value === undefined || Number.isNaN(Number(value))
      ? "–"
      : Number(value).toFixed(digits);
  }

  function show(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function clock(epoch) {
    return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  const epoch = (iso) => Date.parse(iso) / 1000;

  // --- API --------------------------------------------------------------------------------
  async function getJson(path) {
    let resp;
    try {
      resp = await fetch(path, { headers: { Accept: "application/json" } });
    } catch (err) {
      return { ok: false, status: 0, body: { message: `cannot reach the service (${err.message})` } };
    }
    let body = null;
    try {
      body = await resp.json();
    } catch {
      body = null;
    }
    return { ok: resp.ok, status: resp.status, body };
  }

  function failure(answer) {
    const message = answer.body && answer.body.message ? String(answer.body.message) : "";
    return `${answer.status ? `HTTP ${answer.status}` : "network error"} ${message}`.trim();
  }

  function query(params) {
    return new URLSearchParams(params).toString();
  }

  // --- services ---------------------------------------------------------------------------
  async function loadServices() {
    const answer = await getJson("/api/signals/services");
    const select = $("service");
    if (!answer.ok) {
      $("view-status").textContent = `Services unavailable: ${failure(answer)}`;
      return false;
    }
    const chosen = select.value;
    state.services = new Map(answer.body.map((s) => [s.service, s]));
    clear(select);
    for (const item of answer.body) {
      select.append(el("option", { text: item.service }));
      select.lastChild.value = item.service;
    }
    if (state.services.has(chosen)) select.value = chosen;
    if (!answer.body.length) {
      $("view-status").textContent = "No service has rows in telemetry.features yet.";
    }
    return answer.body.length > 0;
  }

  // The range ends at the service's newest bucket, so a history generated for a past range is
  // shown as well as live data.
  function currentRange() {
    const service = state.services.get($("service").value);
    const seconds = Number($("range").value);
    const end = service ? epoch(service.latest) + state.bucketSeconds : Date.now() / 1000;
    return [end - seconds, end];
  }

  // --- charts -----------------------------------------------------------------------------
  // A closed event's band runs to the end of its last anomalous bucket; an open one to the end
  // of the range.
  function eventSpan(event) {
    const start = epoch(event.start);
    const end = event.state === "open"
      ? state.range[1]
      : epoch(event.last_anomalous) + state.bucketSeconds;
    return [start, Math.max(end, start)];
  }

  function truthSpan(window) {
    const start = epoch(window.start);
    const end = window.end ? epoch(window.end) : Math.min(state.range[1], Date.now() / 1000);
    return [start, Math.max(end, start)];
  }

  function overlaps([start, end]) {
    return start < state.range[1] && end >= state.range[0];
  }

  function drawBands(u) {
    const { ctx } = u;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
    const x = (value) => u.valToPos(value, "x", true);
    state.windows.forEach((w, i) => {
      const [start, end] = truthSpan(w);
      const x0 = x(start);
      ctx.fillStyle = TRUTH_FILL;
      ctx.fillRect(x0, top, Math.max(2, x(end) - x0), height);
      ctx.fillStyle = TRUTH_TEXT;
      const room = left + width - ctx.measureText(w.anomaly_type).width - 4;
      const line = top + (12 + 12 * (i % 3)) * devicePixelRatio;
      ctx.fillText(w.anomaly_type, Math.min(Math.max(left, x0) + 3, room), line);
    });
    state.events.forEach((e) => {
      const [start, end] = eventSpan(e);
      const x0 = x(start);
      const bandWidth = Math.max(2, x(end) - x0);
      ctx.fillStyle = EVENT_FILL;
      ctx.fillRect(x0, top, bandWidth, height);
      if (e.state === "open") {
        ctx.strokeStyle = EVENT_EDGE;
        ctx.lineWidth = 2 * devicePixelRatio;
        ctx.strokeRect(x0, top + 1, bandWidth, height - 2);
        ctx.fillStyle = EVENT_EDGE;
        ctx.fillText("open", Math.max(left, x0) + 3, top + height - 6 * devicePixelRatio);
      }
    });
    ctx.restore();
  }

  function describeAt(t) {
    const parts = [];
    for (const w of state.windows) {
      const [start, end] = truthSpan(w);
      if (t >= start && t <= end) parts.push(`ground truth: ${w.anomaly_type} (${w.scenario_id})`);
    }
    for (const e of state.events) {
      const [start, end] = eventSpan(e);
      if (t >= start && t <= end) {
        parts.push(`event (${e.state}): ${e.severity}, ${e.signals.join(", ")}`);
      }
    }
    return parts.length ? `${clock(t)} · ${parts.join(" · ")}` : "";
  }

  function onCursor(u) {
    if (u.cursor.left === null || u.cursor.left < 0) return;
    $("hover").textContent = describeAt(u.posToVal(u.cursor.left, "x"));
  }

  function destroyPlots() {
    for (const plot of state.plots) plot.destroy();
    state.plots = [];
  }

  function drawCharts(signals) {
    const container = $("charts");
    destroyPlots();
    clear(container);
    if (typeof window.uPlot !== "function") {
      container.append(el("p", { class: "error", text: "The chart library did not load." }));
      return;
    }
    const eventBands = state.events.filter((e) => overlaps(eventSpan(e))).length;
    const truthBands = state.windows.filter((w) => overlaps(truthSpan(w))).length;
    const empty = [];
    for (const series of signals.series) {
      const values = signals.values[series.name] || [];
      if (!values.some((v) => v !== null)) {
        empty.push(series.name);
        continue;
      }
      const box = el("div", {
        class: "chart",
        "data-series": series.name,
        "data-event-bands": String(eventBands),
        "data-truth-bands": String(truthBands),
        "data-points": String(values.length),
      });
      const title = `${series.name} — ${series.signal} ${series.feature} (${series.column})`;
      box.append(el("h3", { text: title }));
      container.append(box);
      const opts = {
        width: Math.max(320, container.clientWidth),
        height: CHART_HEIGHT,
        scales: { x: { time: true, range: () => state.range } },
        // The axes in UTC, as every time the page prints.
        tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        legend: { show: true },
        series: [{}, { label: series.name, stroke: "#1f5fbf", width: 1.5 }],
        hooks: { drawClear: [drawBands], setCursor: [onCursor] },
      };
      state.plots.push(new window.uPlot(opts, [signals.timestamps, values], box));
    }
    $("empty-series").textContent = empty.length
      ? `No value in this range for: ${empty.join(", ")}.`
      : "";
    container.dataset.charts = String(state.plots.length);
    container.dataset.eventBands = String(eventBands);
    container.dataset.truthBands = String(truthBands);
  }

  function fillBands() {
    const rows = [];
    for (const e of state.events.filter((item) => overlaps(eventSpan(item)))) {
      const what = `${e.severity} · ${e.signals.join(", ")} · peak ${fixed(e.peak_score, 3)}` +
        (e.state === "open" ? " · open" : "");
      rows.push(el("tr", { class: "band event", "data-kind": "event" },
        el("td", {}, el("span", { class: "swatch event" }), " detected event"),
        el("td", { text: what }),
        el("td", { text: e.start }),
        el("td", { text: e.state === "open" ? "open" : e.last_anomalous })));
    }
    for (const w of state.windows.filter((item) => overlaps(truthSpan(item)))) {
      rows.push(el("tr", { class: "band truth", "data-kind": "truth" },
        el("td", {}, el("span", { class: "swatch truth" }), " ground truth"),
        el("td", { text: `${w.anomaly_type} (${w.scenario_id})` }),
        el("td", { text: w.start }),
        el("td", { text: w.end || "open" })));
    }
    fillTable($("bands"), rows, "No event and no ground-truth window in this range.");
  }

  async function refreshSignals() {
    const service = $("service").value;
    if (!service) return;
    // Only the answers to the latest request are drawn (a quick change of service or range
    // must not be overwritten by the slower answer to the one before).
    const request = (state.request = (state.request || 0) + 1);
    const range = currentRange();
    const params = {
      service,
      from: new Date(range[0] * 1000).toISOString(),
      to: new Date(range[1] * 1000).toISOString(),
    };
    const [signals, events, truth] = await Promise.all([
      getJson(`/api/signals?${query(params)}`),
      getJson(`/api/anomalies?${query({ ...params, limit: 1000 })}`),
      getJson(`/api/ground-truth-windows?${query(params)}`),
    ]);
    if (request !== state.request) return;
    state.range = range;
    $("hover").textContent = "";
    $("range-label").textContent =
      `${service}: ${clock(state.range[0])} – ${clock(state.range[1])} (ending at its newest bucket)`;
    state.events = events.ok ? events.body : [];
    const truthStatus = $("truth-status");
    if (truth.ok && truth.body.available) {
      state.windows = truth.body.windows;
      truthStatus.className = "hint";
      truthStatus.textContent = `${state.windows.length} ground-truth window(s) in this range.`;
    } else {
      state.windows = [];
      truthStatus.className = "hint unavailable";
      const reason = truth.ok ? truth.body.reason : failure(truth);
      truthStatus.textContent = `ground truth unavailable: ${reason}`;
    }
    if (!signals.ok) {
      destroyPlots();
      clear($("charts"));
      $("charts").append(el("p", { class: "error", text: `Signals unavailable: ${failure(signals)}` }));
    } else {
      state.bucketSeconds = signals.body.bucket_seconds || DEFAULT_BUCKET_SECONDS;
      drawCharts(signals.body);
    }
    fillBands();
    const problems = [];
    if (!events.ok) problems.push(`events unavailable: ${failure(events)}`);
    if (signals.ok && signals.body.downsampled_seconds) {
      problems.push(`each point is the maximum of ${signals.body.downsampled_seconds} s of buckets`);
    }
    $("view-status").textContent = problems.join(" · ");
  }

  // --- open events ------------------------------------------------------------------------
  async function refreshOpenEvents() {
    const answer = await getJson(`/api/anomalies?${query({ state: "open", limit: OPEN_EVENTS_LIMIT })}`);
    if (!answer.ok) {
      fillTable($("open-events"), [], `Open events unavailable: ${failure(answer)}`);
      return;
    }
    const rows = answer.body.map((e) => {
      const severity = el("td", { text: e.severity });
      if (SEVERITIES.has(e.severity)) severity.className = `severity-${e.severity}`;
      return el("tr", { class: "open-event", "data-event-id": e.id },
        el("td", { text: e.service }),
        severity,
        el("td", { text: e.start }),
        el("td", { text: e.signals.join(", ") }),
        el("td", { class: "num", text: fixed(e.peak_score, 3) }),
        el("td", { text: e.voters.join(", ") }),
        el("td", {}, el("a", { href: `/api/anomalies/${encodeURIComponent(e.id)}`, text: "JSON" })));
    });
    fillTable($("open-events"), rows, "No event is open.");
  }

  // --- the detection loop (what the generic status page showed) -----------------------------
  async function refreshLoop() {
    const answer = await getJson("/api/status");
    const line = $("loop-status");
    if (!answer.ok) {
      line.textContent = `Status unavailable: ${failure(answer)}`;
      fillTable($("counters"), [], "–");
      return;
    }
    const status = answer.body;
    const parts = [
      `last round ${show(status.last_round)}`,
      `lag ${fixed(status.lag_seconds, 1)} s`,
      `open events ${show(status.events ? status.events.open : null)}`,
    ];
    if (status.last_error) parts.push(`last error: ${status.last_error}`);
    line.textContent = parts.join(" · ");
    line.className = status.last_error ? "hint error" : "hint";
    const counters = status.counters && typeof status.counters === "object" ? status.counters : {};
    fillTable($("counters"), Object.entries(counters).map(([name, value]) =>
      el("tr", { "data-counter": name }, el("td", { text: name }),
        el("td", { class: "num", text: show(value) }))), "No counter yet.");
  }

  // --- scoreboard -------------------------------------------------------------------------
  function table(id, headers, rows) {
    const head = el("tr", {}, ...headers.map((h) => el("th", { text: h })));
    const body = el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => {
      const td = el("td", { text: show(c) });
      if (typeof c === "number") td.className = "num";
      return td;
    }))));
    const node = el("table", { "data-table": id }, el("thead", {}, head), body);
    node.id = id;
    return node;
  }

  function renderScoreboard(doc) {
    const box = $("scoreboard");
    clear(box);
    const overall = doc.overall && typeof doc.overall === "object" ? doc.overall : {};
    const targets = doc.targets && typeof doc.targets === "object" ? doc.targets : {};
    // "days" is the layout of the history: {learn, test, normal_only, start, resolution_seconds}.
    const days = doc.days && typeof doc.days === "object"
      ? Object.entries(doc.days).map(([key, value]) => `${key} ${show(value)}`).join(", ")
      : `${show(doc.days)} days`;
    box.append(el("p", { class: "hint", text:
      `seed ${show(doc.seed)} · generated ${show(doc.generated_at)} · ${days} · ` +
      `targets met: ${show(doc.met)}` }));
    box.append(el("h3", { text: "Overall" }));
    box.append(table("scoreboard-overall", ["measure", "value", "target"],
      Object.entries(overall).map(([key, value]) => [key, value, targets[key]])));
    // The document is another program's output: rows that are not objects are skipped.
    const rowsOf = (value) => (Array.isArray(value) ? value : [])
      .filter((item) => item !== null && typeof item === "object");
    const perType = rowsOf(doc.per_type);
    box.append(el("h3", { text: "Per anomaly type" }));
    box.append(table("scoreboard-per-type",
      ["anomaly type", "observable", "windows", "detected", "recall", "precision", "ttd p50 (s)"],
      perType.map((t) => [t.anomaly_type, t.observable, t.windows, t.detected, t.recall,
        t.precision, t.ttd_p50_s])));
    const perDetector = rowsOf(doc.per_detector);
    if (perDetector.length) {
      const columns = Object.keys(perDetector[0]);
      box.append(el("h3", { text: "Per detector" }));
      box.append(table("scoreboard-per-detector", columns,
        perDetector.map((d) => columns.map((c) => d[c]))));
    }
    const invisible = rowsOf(doc.invisible);
    box.append(el("h3", { text: "Not observable in the features" }));
    box.append(table("scoreboard-invisible", ["anomaly type", "reason"],
      invisible.map((i) => [i.anomaly_type, i.reason])));
    const windows = rowsOf(doc.windows);
    if (windows.length) {
      box.append(el("h3", { text: "Ground-truth windows of the evaluation" }));
      box.append(table("scoreboard-windows",
        ["anomaly type", "scenario", "services", "start", "end", "observable", "detected",
          "time to detect (s)"],
        windows.map((w) => [w.anomaly_type, w.scenario_id,
          Array.isArray(w.services) ? w.services.join(", ") : w.services, w.start, w.end,
          w.observable, w.detected, w.ttd_s])));
    }
  }

  async function refreshScoreboard() {
    const answer = await getJson("/api/scoreboard");
    const box = $("scoreboard");
    if (answer.ok) {
      renderScoreboard(answer.body);
      return;
    }
    clear(box);
    const text = answer.status === 404 ? NO_SCOREBOARD : `Scoreboard unavailable: ${failure(answer)}`;
    box.append(el("p", { class: answer.status === 404 ? "hint none" : "error", text }));
  }

  // --- wiring -----------------------------------------------------------------------------
  async function refreshAll() {
    clearTimeout(state.timer);
    try {
      const haveServices = await loadServices();
      await Promise.all([
        haveServices ? refreshSignals() : Promise.resolve(),
        refreshOpenEvents(),
        refreshLoop(),
        refreshScoreboard(),
      ]);
      document.body.dataset.refreshed = new Date().toISOString();
    } finally {
      state.timer = setTimeout(refreshAll, REFRESH_MS);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("view-form").addEventListener("submit", (event) => {
      event.preventDefault();
      refreshAll();
    });
    $("service").addEventListener("change", () => refreshSignals());
    $("range").addEventListener("change", () => refreshSignals());
    window.addEventListener("resize", () => {
      const width = Math.max(320, $("charts").clientWidth);
      for (const plot of state.plots) plot.setSize({ width, height: CHART_HEIGHT });
    });
    refreshAll();
  });
})();
