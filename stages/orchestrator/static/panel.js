// Control panel of the Scenario Orchestrator. Everything it shows comes from the public API and
// is inserted as text (textContent / createElement), never as HTML: scenario names, error
// messages and targets are strings a user or a peer could have chosen.
"use strict";

(() => {
  const POLL_MS = 3000;
  const PAGE_SIZE = 20;
  const CHART_SECONDS = 300;
  const MIN_CHART_SECONDS = 60;
  const LATEST_WINDOWS = 15;
  const MAX_MESSAGES = 6;
  const TOKEN_KEY = "orchestrator-control-token";
  const SEVERITIES = new Set(["low", "medium", "high", "critical"]);
  const ONE_CLICK = { intensity: 90, duration_seconds: 60 };

  const $ = (id) => document.getElementById(id);

  // --- API --------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body, retryAfter) {
      super(describeError(status, body, retryAfter));
      this.status = status;
    }
  }

  function controlToken() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  async function api(method, path, body) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = controlToken();
    if (token && method !== "GET") headers.Authorization = `Bearer ${token}`;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, { message: `cannot reach the orchestrator (${err.message})` });
    }
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { message: text.slice(0, 300) };
    }
    if (!resp.ok) throw new ApiError(resp.status, data, resp.headers.get("Retry-After"));
    return data;
  }

  // The shared error body is {"error", "message", "detail"}: validation errors carry a list of
  // {location, problem}; unknown types and targets carry {"valid": [...]}.
  function describeError(status, body, retryAfter) {
    const parts = [status ? `HTTP ${status}` : "network error"];
    if (body && body.message) parts.push(String(body.message));
    const detail = body ? body.detail : undefined;
    if (Array.isArray(detail)) {
      parts.push(detail.map((d) => `${d.location}: ${d.problem}`).join("; "));
    } else if (detail && Array.isArray(detail.valid)) {
      parts.push(`valid: ${detail.valid.join(", ")}`);
    } else if (detail !== undefined && detail !== null) {
      parts.push(JSON.stringify(detail));
    }
    if (status === 401) parts.push("(enter the control token at the top of the page)");
    if (status === 503 && retryAfter) parts.push(`(retry after ${retryAfter} s)`);
    return parts.join(" — ");
  }

  // --- DOM helpers ------------------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : String(child ?? ""));
    }
    return node;
  }

  function clock(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleTimeString();
  }

  function fixed(value, digits = 1) {
    return typeof value === "number" ? value.toFixed(digits) : "—";
  }

  function fillTable(table, rows, emptyText) {
    const body = table.tBodies[0];
    const columns = table.tHead.rows[0].cells.length;
    body.replaceChildren(...rows);
    if (!rows.length) {
      body.append(el("tr", { class: "empty" }, el("td", { colSpan: columns }, emptyText)));
    }
  }

  function showMessage(text, kind) {
    const box = $("messages");
    const close = el("button", { type: "button", class: "close", title: "dismiss" }, "×");
    const message = el("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" },
      el("span", { class: "text" }, text), close);
    close.addEventListener("click", () => message.remove());
    box.prepend(message);
    while (box.children.length > MAX_MESSAGES) box.lastElementChild.remove();
    if (kind !== "error") setTimeout(() => message.remove(), 8000);
  }

  // Runs a user action; its outcome is always visible (a success line or the server's error).
  async function act(button, action, success) {
    if (button) button.disabled = true;
    try {
      const result = await action();
      showMessage(success(result), "ok");
      refreshLive();
      return result;
    } catch (err) {
      showMessage(err.message, "error");
      return null;
    } finally {
      if (button) button.disabled = false;
    }
  }

  // A number input's value, or undefined when empty (the server then applies its default or
  // says the field is required). Out-of-range values are sent as typed: the server's 422 says why.
  function numberField(id) {
    const raw = $(id).value.trim();
    if (raw === "") return undefined;
    const value = Number(raw);
    return Number.isNaN(value) ? raw : value;
  }

  function definedOnly(object) {
    return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined));
  }

  // --- control token ----------------------------------------------------------------------
  function initToken() {
    const input = $("control-token");
    const state = $("token-state");
    const describe = () => {
      state.textContent = controlToken() ? "token set for this tab" : "no token set";
    };
    input.value = controlToken();
    describe();
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
      describe();
    });
  }

  // --- continuous generation --------------------------------------------------------------
  function initContinuous() {
    $("continuous-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const body = definedOnly({
        interval_seconds: numberField("interval_seconds"),
        logs_per_interval: numberField("logs_per_interval"),
        duration_seconds: numberField("duration_seconds"),
        anomaly_rate: numberField("anomaly_rate"),
      });
      act($("continuous-start"), () => api("POST", "/api/continuous/start", body),
        (stats) => `Continuous generation started: ${fixed(stats.requested_rate)} records/s requested`);
    });
    $("continuous-stop").addEventListener("click", (event) => {
      act(event.currentTarget, () => api("POST", "/api/continuous/stop"),
        (stats) => `Continuous generation stopped after ${stats.records_produced ?? 0} records`);
    });
  }

  // --- anomaly triggers -------------------------------------------------------------------
  function trigger(button, body) {
    return act(button, () => api("POST", "/api/anomaly/trigger", body),
      (result) => `${result.window.anomaly_type} window opened on ${result.window.scenario_id} ` +
        `(${result.mode === "continuous" ? "folded into continuous generation" : "as an execution"})`);
  }

  function initTriggers() {
    for (const button of document.querySelectorAll("button[data-anomaly]")) {
      button.addEventListener("click", () =>
        trigger(button, { anomaly_type: button.dataset.anomaly, ...ONE_CLICK }));
    }
    $("trigger-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const target = $("trigger-target").value.trim();
      trigger($("trigger-submit"), definedOnly({
        anomaly_type: $("trigger-type").value,
        intensity: numberField("trigger-intensity"),
        duration_seconds: numberField("trigger-duration"),
        target: target || undefined,
      }));
    });
  }

  // --- scenario catalogue -----------------------------------------------------------------
  const catalogue = { offset: 0, total: 0, timer: null, request: 0 };

  async function loadCategories() {
    try {
      const data = await api("GET", "/api/scenarios/categories");
      const category = $("scenario-category");
      for (const [name, count] of Object.entries(data.categories)) {
        category.append(el("option", { value: name }, `${name} (${count})`));
      }
      const severity = $("scenario-severity");
      for (const [name, count] of Object.entries(data.severities)) {
        severity.append(el("option", { value: name }, `${name} (${count})`));
      }
    } catch (err) {
      showMessage(`Cannot load the scenario categories: ${err.message}`, "error");
    }
  }

  async function loadScenarios() {
    const params = new URLSearchParams({ limit: PAGE_SIZE, offset: catalogue.offset });
    const q = $("scenario-search").value.trim();
    if (q) params.set("q", q);
    if ($("scenario-category").value) params.set("category", $("scenario-category").value);
    if ($("scenario-severity").value) params.set("severity", $("scenario-severity").value);
    const request = ++catalogue.request;
    // Paging acts on the page shown; until this answer is drawn there is none to page from.
    $("scenario-prev").disabled = true;
    $("scenario-next").disabled = true;
    let page;
    try {
      page = await api("GET", `/api/scenarios?${params}`);
    } catch (err) {
      if (request === catalogue.request) {
        $("scenario-count").textContent = "";
        fillTable($("scenario-list"), [], "The catalogue could not be loaded.");
        showMessage(`Cannot list scenarios: ${err.message}`, "error");
      }
      return;
    }
    if (request !== catalogue.request) return; // a newer search already answered
    catalogue.total = page.total;
    $("scenario-count").textContent = `${page.total} scenario${page.total === 1 ? "" : "s"}`;
    fillTable($("scenario-list"), page.items.map(scenarioRow), "No scenario matches.");
    const pages = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
    $("scenario-page").textContent = `page ${Math.floor(catalogue.offset / PAGE_SIZE) + 1} of ${pages}`;
    $("scenario-prev").disabled = catalogue.offset === 0;
    $("scenario-next").disabled = catalogue.offset + PAGE_SIZE >= page.total;
  }

  function scenarioRow(scenario) {
    const severity = SEVERITIES.has(scenario.severity) ? scenario.severity : "unknown";
    const start = el("button", { type: "button", class: "start", "data-scenario": scenario.id }, "Start");
    const show = el("button", { type: "button", class: "definition-toggle" }, "Definition");
    const row = el("tr", { class: "scenario", "data-scenario": scenario.id },
      el("td", {}, el("strong", {}, scenario.name), el("br"), el("code", {}, scenario.id)),
      el("td", {}, scenario.category),
      el("td", {}, el("span", { class: `severity sev-${severity}` }, scenario.severity)),
      el("td", {}, scenario.anomaly_type),
      el("td", {}, `${scenario.target.kind} ${scenario.target.name}`),
      el("td", { class: "actions" }, start, show));
    start.addEventListener("click", () => startScenario(start, scenario.id));
    show.addEventListener("click", () => toggleDefinition(row, show, scenario.id));
    return row;
  }

  function startScenario(button, id) {
    const body = definedOnly({
      duration_seconds: numberField("execute-duration"),
      intensity: numberField("execute-intensity"),
      rate: numberField("execute-rate"),
    });
    act(button, () => api("POST", `/api/scenarios/${encodeURIComponent(id)}/execute`, body),
      (execution) => `Execution ${execution.id} of ${execution.scenario_id} started ` +
        `(${fixed(execution.rate)} records/s for ${fixed(execution.duration_seconds, 0)} s)`);
  }

  async function toggleDefinition(row, button, id) {
    const next = row.nextElementSibling;
    if (next && next.classList.contains("definition-row")) {
      next.remove();
      button.textContent = "Definition";
      return;
    }
    button.disabled = true;
    try {
      const scenario = await api("GET", `/api/scenarios/${encodeURIComponent(id)}`);
      const cell = el("td", { colSpan: row.cells.length },
        el("pre", { class: "definition" }, JSON.stringify(scenario, null, 2)));
      row.after(el("tr", { class: "definition-row" }, cell));
      button.textContent = "Hide";
    } catch (err) {
      showMessage(`Cannot load ${id}: ${err.message}`, "error");
    } finally {
      button.disabled = false;
    }
  }

  function initCatalogue() {
    const reload = () => {
      // Any reload reads the search box as it is now, so a pending debounced search is moot;
      // left pending it would fire later and send the user back to page 1.
      clearTimeout(catalogue.timer);
      catalogue.offset = 0;
      loadScenarios();
    };
    $("scenario-search").addEventListener("input", () => {
      clearTimeout(catalogue.timer);
      catalogue.timer = setTimeout(reload, 250);
    });
    $("scenario-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      reload();
    });
    $("scenario-category").addEventListener("change", reload);
    $("scenario-severity").addEventListener("change", reload);
    $("scenario-prev").addEventListener("click", () => {
      catalogue.offset = Math.max(0, catalogue.offset - PAGE_SIZE);
      loadScenarios();
    });
    $("scenario-next").addEventListener("click", () => {
      if (catalogue.offset + PAGE_SIZE < catalogue.total) catalogue.offset += PAGE_SIZE;
      loadScenarios();
    });
    $("execute-options").addEventListener("submit", (event) => event.preventDefault());
    loadCategories();
    loadScenarios();
  }

  // --- live panels ------------------------------------------------------------------------
  function renderStats(stats, executions) {
    const running = executions.items.filter((e) => e.status === "running");
    const entries = [
      ["continuous generation", stats.running ? "running" : "stopped"],
      ["requested rate (records/s)", fixed(stats.requested_rate)],
      ["measured rate (records/s)", fixed(stats.measured_rate)],
      ["measured rate, last 10 s", fixed(stats.measured_rate_recent)],
      ["can keep up", stats.can_keep_up ? "yes" : "NO — the generator is behind"],
      ["records produced", stats.records_produced ?? 0],
      ["records requested", stats.records_requested ?? 0],
      ["records failed", stats.records_failed ?? 0],
      ["records skipped (backlog)", stats.records_skipped ?? 0],
      ["elapsed (s)", fixed(stats.elapsed_seconds, 0)],
      ["random anomalies started", stats.anomalies_started ?? 0],
      ["random anomalies skipped (too many open)", stats.anomalies_skipped ?? 0],
      ["executions running", running.length],
      ["records of running executions", running.reduce((n, e) => n + e.logs_generated, 0)],
      ["last error", stats.last_error || "none"],
    ];
    const keys = { "measured rate (records/s)": "measured-rate", "records produced": "records-produced" };
    $("live-stats").replaceChildren(...entries.flatMap(([name, value]) => [
      el("dt", {}, name),
      el("dd", keys[name] ? { "data-stat": keys[name] } : {}, value),
    ]));
    $("live-stats").classList.toggle("behind", stats.can_keep_up === false);
  }

  function windowRow(window, withEnd) {
    const cells = [
      el("td", {}, window.anomaly_type),
      el("td", {}, el("code", {}, window.scenario_id)),
      el("td", {}, window.services.join(", ")),
    ];
    if (withEnd) {
      cells.push(el("td", {}, clock(window.start)), el("td", {}, window.end ? clock(window.end) : "open"));
      cells.push(el("td", {}, fixed(window.intensity, 0)), el("td", {}, window.source));
    } else {
      cells.push(el("td", {}, window.target_entity || "—"), el("td", {}, fixed(window.intensity, 0)));
      cells.push(el("td", {}, clock(window.start)), el("td", {}, clock(window.planned_end)));
      cells.push(el("td", {}, window.source));
    }
    return el("tr", { class: "window", "data-anomaly-type": window.anomaly_type }, ...cells);
  }

  function executionRow(execution) {
    const stop = execution.status === "running"
      ? el("button", { type: "button", class: "stop" }, "Stop") : "";
    if (stop) {
      stop.addEventListener("click", () => act(stop,
        () => api("POST", `/api/executions/${encodeURIComponent(execution.id)}/stop`),
        (e) => `Execution ${e.id} stopped after ${e.logs_generated} records`));
    }
    return el("tr", { class: `execution status-${execution.status === "running" ? "running" : "done"}` },
      el("td", {}, el("code", {}, execution.id)),
      el("td", {}, execution.scenario_id),
      el("td", {}, execution.source),
      el("td", {}, execution.status),
      el("td", {}, clock(execution.started_at)),
      el("td", {}, fixed(execution.rate)),
      el("td", {}, fixed(execution.intensity, 0)),
      el("td", {}, execution.logs_generated),
      el("td", {}, execution.records_failed),
      el("td", { class: "error-text" }, execution.last_error || ""),
      el("td", {}, stop));
  }

  async function latestWindows() {
    const head = await api("GET", "/api/ground-truth?limit=1");
    const offset = Math.max(0, head.total - LATEST_WINDOWS);
    const page = await api("GET", `/api/ground-truth?limit=${LATEST_WINDOWS}&offset=${offset}`);
    return page.items.reverse();
  }

  let pollTimer = null;
  let polling = false;
  let again = false; // an action asked for a refresh while one was running

  async function refreshLive() {
    if (polling) {
      again = true;
      return;
    }
    polling = true;
    again = false;
    clearTimeout(pollTimer);
    const results = await Promise.allSettled([
      api("GET", "/api/continuous/stats"),
      api("GET", "/api/executions?limit=20"),
      api("GET", "/api/ground-truth?open=true&limit=200"),
      latestWindows(),
      api("GET", `/api/panel/rate?seconds=${CHART_SECONDS}`),
    ]);
    const [stats, executions, open, latest, rate] = results;
    if (stats.status === "fulfilled" && executions.status === "fulfilled") {
      renderStats(stats.value, executions.value);
    }
    if (executions.status === "fulfilled") {
      fillTable($("executions"), executions.value.items.map(executionRow), "No executions yet.");
    }
    if (open.status === "fulfilled") {
      fillTable($("active-anomalies"), open.value.items.map((w) => windowRow(w, false)),
        "No anomaly window is open.");
    }
    if (latest.status === "fulfilled") {
      fillTable($("ground-truth"), latest.value.map((w) => windowRow(w, true)), "No windows yet.");
    }
    if (rate.status === "fulfilled") chart.update(rate.value);
    const failed = results.filter((r) => r.status === "rejected");
    const status = $("poll-status");
    if (failed.length) {
      status.textContent = `Refresh failed: ${failed[0].reason.message}`;
      status.className = "error";
    } else {
      status.textContent = `Updated ${new Date().toLocaleTimeString()} (every ${POLL_MS / 1000} s)`;
      status.className = "hint";
    }
    polling = false;
    pollTimer = setTimeout(refreshLive, again ? 0 : POLL_MS);
  }

  // --- rate chart -------------------------------------------------------------------------
  const chart = {
    plot: null,
    windows: [],
    firstSample: null,

    create() {
      const container = $("rate-chart");
      if (typeof window.uPlot !== "function") {
        container.append(el("p", { class: "error" }, "The chart library did not load."));
        return;
      }
      const opts = {
        width: Math.max(320, container.clientWidth),
        height: 240,
        scales: {
          x: { time: true, range: () => this.timeRange() },
          y: { range: (u, min, max) => [0, Math.max(5, (max || 0) * 1.15)] },
        },
        axes: [{}, { label: "records/s", size: 60 }],
        series: [
          {},
          { label: "total", stroke: "#1f5fbf", width: 2, fill: "rgba(31,95,191,0.08)" },
          { label: "continuous", stroke: "#2e8b57", width: 1 },
          { label: "executions", stroke: "#b8860b", width: 1 },
        ],
        hooks: { drawClear: [(u) => this.drawWindows(u)] },
      };
      this.plot = new window.uPlot(opts, [[], [], [], []], container);
      window.addEventListener("resize", () => {
        this.plot.setSize({ width: Math.max(320, container.clientWidth), height: 240 });
      });
    },

    // The last CHART_SECONDS, or less while the service has not sampled that long (at least
    // MIN_CHART_SECONDS), so a fresh start does not draw a mostly empty chart.
    timeRange() {
      const now = Date.now() / 1000;
      const oldest = this.firstSample ?? now;
      return [Math.max(now - CHART_SECONDS, Math.min(oldest, now - MIN_CHART_SECONDS)), now];
    },

    update(history) {
      if (!this.plot) return;
      this.windows = history.windows;
      this.firstSample = history.points.length ? history.points[0].at : null;
      const points = history.points;
      this.plot.setData([
        points.map((p) => p.at),
        points.map((p) => p.total),
        points.map((p) => p.continuous),
        points.map((p) => p.execution),
      ]);
      $("rate-chart").dataset.points = String(points.length);
      $("rate-chart").dataset.windows = String(history.windows.length);
    },

    // Ground-truth windows as shaded bands behind the series, labelled with their type
    // (canvas text: nothing here is parsed as HTML).
    drawWindows(u) {
      const { ctx } = u;
      const { left, top, width, height } = u.bbox;
      const now = Date.now() / 1000;
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, top, width, height);
      ctx.clip();
      ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
      this.windows.forEach((w, i) => {
        const start = Date.parse(w.start) / 1000;
        const end = w.end ? Date.parse(w.end) / 1000 : now;
        const x0 = u.valToPos(start, "x", true);
        const x1 = u.valToPos(end, "x", true);
        ctx.fillStyle = "rgba(214, 69, 65, 0.14)";
        ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
        ctx.fillStyle = "rgba(160, 40, 36, 0.9)";
        // Keep the label inside the plot even for a window that just opened at the right edge.
        const room = left + width - ctx.measureText(w.anomaly_type).width - 4;
        const line = top + (14 + 13 * (i % 4)) * devicePixelRatio;
        ctx.fillText(w.anomaly_type, Math.min(Math.max(left, x0) + 4, room), line);
      });
      ctx.restore();
    },
  };

  document.addEventListener("DOMContentLoaded", () => {
    initToken();
    initContinuous();
    initTriggers();
    initCatalogue();
    chart.create();
    refreshLive();
  });
})();
