// The pipeline dashboard's page logic. Every string that comes from the pipeline (keys, service
// names, log messages) is inserted with textContent / createElement, never as HTML: a record's
// text must stay text however it is crafted.
"use strict";

(function () {
  const state = {
    config: null,
    browser: { bucket: null, prefix: "", tokens: [null], page: 0, requests: 0 },
    viewer: { bucket: null, key: null, requests: 0 },
    charts: { throughput: null, lag: null },
  };

  // --- small DOM helpers ----------------------------------------------------------------------
  function el(tag, options, children) {
    const node = document.createElement(tag);
    const opts = options || {};
    if (opts.cls) node.className = opts.cls;
    if (opts.text !== undefined && opts.text !== null) node.textContent = String(opts.text);
    if (opts.title) node.title = opts.title;
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function panelError(panel, message) {
    const box = panel.querySelector(".error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function table(headers, rows) {
    const head = el("tr", {}, headers.map((h) => el("th", { text: h })));
    const body = rows.map((cells) => el("tr", {}, cells));
    return el("table", {}, [el("thead", {}, [head]), el("tbody", {}, body)]);
  }

  function cell(value, cls) {
    return el("td", { text: value, cls: cls });
  }

  function uncountedCell(hour) {
    // Why a count is unknown, shown on hover: over the budget, not reached, a gzip bomb...
    const td = cell(num(hour.records), "num");
    if (hour.uncounted) td.title = hour.uncounted;
    return td;
  }

  function num(value) {
    return value === null || value === undefined ? "–" : Number(value).toLocaleString("en-US");
  }

  function bytes(value) {
    if (value === null || value === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = Number(value);
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
  }

  function rate(value) {
    return value === null || value === undefined ? "–" : value.toFixed(1) + "/s";
  }

  async function getJSON(url) {
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" } });
    } catch (err) {
      throw new Error("dashboard unreachable: " + err.message);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.message ? body.message : response.statusText;
      throw new Error(response.status + ": " + message);
    }
    return body;
  }

  function api(path, params) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined) query.set(name, value);
    }
    const qs = query.toString();
    return getJSON(path + (qs ? "?" + qs : ""));
  }

  function bucketPath(bucket, suffix) {
    return "/api/buckets/" + encodeURIComponent(bucket) + suffix;
  }

  // --- consumer ---------------------------------------------------------------------------------
  async function refreshConsumer() {
    const panel = document.getElementById("consumer-status");
    const body = panel.querySelector(".body");
    try {
      const status = await getJSON("/api/consumer");
      panelError(panel, null);
      clear(body);
      const stateLine = el("p", {}, [
        el("span", { text: "State: " }),
        el("span", { text: status.state, cls: "state state-" + status.state }),
      ]);
      body.appendChild(stateLine);
      if (status.reason) body.appendChild(el("p", { cls: "meta", text: status.reason }));
      const health = status.health || {};
      const rows = [
        ["Worker", health.worker_id],
        ["Owned shards", health.owned_shards ? health.owned_shards.length : null],
        ["Records in", num(health.records_in)],
        ["Records out", num(health.records_out)],
        ["Objects written", num(health.objects_written)],
        ["Dead letters", num(health.dead_letters)],
        ["Endpoint", status.url],
      ].map(([name, value]) => [cell(name), cell(value === undefined ? "–" : value)]);
      body.appendChild(table(["", ""], rows));
    } catch (err) {
      panelError(panel, "Consumer status unavailable: " + err.message);
    }
  }

  // --- streams ----------------------------------------------------------------------------------
  async function refreshStreams() {
    const panel = document.getElementById("streams");
    const body = panel.querySelector(".body");
    try {
      const data = await getJSON("/api/streams");
      panelError(panel, null);
      clear(body);
      const rows = [];
      for (const stream of data.streams) {
        const shards = stream.shards.map((s) => {
          const lag = s.millis_behind_latest === null ? "lag –" : "lag " + num(s.millis_behind_latest) + " ms";
          return s.shard_id + " (" + lag + ", checkpoint " + (s.checkpoint || "–") + ")";
        });
        rows.push([
          cell(stream.name),
          cell(stream.status),
          cell(num(stream.open_shards), "num"),
          cell(stream.retention_hours === undefined ? "–" : stream.retention_hours + " h", "num"),
          cell(rate(stream.incoming_records_per_s), "num"),
          el("td", {}, shards.map((text) => el("div", { text: text }))),
          cell(stream.error || stream.lease_error || ""),
        ]);
      }
      body.appendChild(
        table(["Stream", "Status", "Open shards", "Retention", "Incoming", "Shards", "Problems"], rows)
      );
    } catch (err) {
      panelError(panel, "Streams unavailable: " + err.message);
    }
  }

  // --- buckets ----------------------------------------------------------------------------------
  async function refreshBuckets() {
    const panel = document.getElementById("bucket-summary");
    const body = panel.querySelector(".body");
    try {
      const data = await getJSON("/api/buckets");
      panelError(panel, null);
      clear(body);
      const rows = data.buckets.map((b) => {
        const objects = cell(b.error ? "–" : num(b.objects), "num objects");
        objects.dataset.count = b.error ? "" : String(b.objects);
        const age = b.error ? "–" : Math.round(b.age_seconds) + " s ago";
        return [cell(b.bucket), objects, cell(b.error ? "–" : bytes(b.bytes), "num"), cell(age, "num"), cell(b.error || "")];
      });
      const tbl = table(["Bucket", "Objects", "Bytes", "Listed", "Problems"], rows);
      tbl.querySelectorAll("tbody tr").forEach((tr, i) => {
        tr.dataset.bucket = data.buckets[i].bucket;
      });
      body.appendChild(tbl);
    } catch (err) {
      panelError(panel, "Bucket totals unavailable: " + err.message);
    }
  }

  // --- S3 browser -------------------------------------------------------------------------------
  function browserPanel() {
    return document.getElementById("s3-browser");
  }

  function openPrefix(prefix) {
    state.browser.prefix = prefix;
    state.browser.tokens = [null];
    state.browser.page = 0;
    loadBrowserPage();
  }

  function renderBreadcrumb() {
    const nav = document.getElementById("browser-path");
    clear(nav);
    const root = el("button", { text: state.browser.bucket || "", cls: "crumb" });
    root.type = "button";
    root.addEventListener("click", () => openPrefix(""));
    nav.appendChild(root);
    const parts = state.browser.prefix.split("/").filter((p) => p.length > 0);
    let acc = "";
    for (const part of parts) {
      acc += part + "/";
      const target = acc;
      nav.appendChild(el("span", { text: "/", cls: "sep" }));
      const crumb = el("button", { text: part, cls: "crumb" });
      crumb.type = "button";
      crumb.addEventListener("click", () => openPrefix(target));
      nav.appendChild(crumb);
    }
  }

  async function loadBrowserPage() {
    const panel = browserPanel();
    const listing = document.getElementById("browser-listing");
    const b = state.browser;
    // Only the answer to the latest request is drawn: a slow answer for a folder the user has
    // already left must not replace the one they are looking at.
    const request = ++b.requests;
    renderBreadcrumb();
    try {
      const data = await api(bucketPath(b.bucket, "/list"), {
        prefix: b.prefix,
        token: b.tokens[b.page],
        limit: document.getElementById("browser-page-size").value,
      });
      if (request !== b.requests) return;
      panelError(panel, null);
      clear(listing);
      listing.dataset.bucket = b.bucket;
      listing.dataset.prefix = b.prefix;
      listing.dataset.page = String(b.page + 1);
      for (const prefix of data.prefixes) {
        const button = el("button", { text: prefix.slice(b.prefix.length), cls: "prefix" });
        button.type = "button";
        button.dataset.prefix = prefix;
        button.addEventListener("click", () => openPrefix(prefix));
        listing.appendChild(el("li", { cls: "prefix-item" }, [button]));
      }
      for (const object of data.objects) {
        const button = el("button", { text: object.key.slice(b.prefix.length), cls: "object" });
        button.type = "button";
        button.dataset.key = object.key;
        button.addEventListener("click", () => openObject(b.bucket, object.key));
        const size = el("span", { text: bytes(object.size), cls: "size" });
        listing.appendChild(el("li", { cls: "object-item" }, [button, size]));
      }
      if (!data.prefixes.length && !data.objects.length) {
        listing.appendChild(el("li", { cls: "meta", text: "(empty)" }));
      }
      if (data.next_token && b.tokens.length === b.page + 1) b.tokens.push(data.next_token);
      document.getElementById("browser-next").disabled = !data.next_token;
      document.getElementById("browser-prev").disabled = b.page === 0;
      document.getElementById("browser-page").textContent = "page " + (b.page + 1);
    } catch (err) {
      if (request !== b.requests) return;
      clear(listing);
      panelError(panel, "Listing failed: " + err.message);
    }
  }

  function setupBrowser() {
    const select = document.getElementById("browser-bucket");
    select.addEventListener("change", () => {
      state.browser.bucket = select.value;
      openPrefix("");
    });
    document.getElementById("browser-page-size").addEventListener("change", () => openPrefix(state.browser.prefix));
    document.getElementById("browser-reload").addEventListener("click", () => openPrefix(state.browser.prefix));
    document.getElementById("browser-next").addEventListener("click", () => {
      if (state.browser.tokens.length > state.browser.page + 1) {
        state.browser.page += 1;
        loadBrowserPage();
      }
    });
    document.getElementById("browser-prev").addEventListener("click", () => {
      if (state.browser.page > 0) {
        state.browser.page -= 1;
        loadBrowserPage();
      }
    });
    state.browser.bucket = select.value;
    openPrefix("");
  }

  // --- log viewer -------------------------------------------------------------------------------
  async function openObject(bucket, key) {
    state.viewer.bucket = bucket;
    state.viewer.key = key;
    const panel = document.getElementById("log-viewer");
    const records = document.getElementById("viewer-records");
    const meta = document.getElementById("viewer-meta");
    document.getElementById("viewer-key").textContent = bucket + "/" + key;
    const lines = Math.min(
      Math.max(1, parseInt(document.getElementById("viewer-lines").value, 10) || 50),
      state.config.viewer_max_lines
    );
    clear(records);
    meta.textContent = "loading…";
    const request = ++state.viewer.requests;
    try {
      const data = await api(bucketPath(bucket, "/object"), { key: key, lines: lines });
      if (request !== state.viewer.requests) return;
      panelError(panel, null);
      meta.textContent =
        data.lines.length + " lines, " + data.anomalous + " anomalous · read " +
        bytes(data.bytes_read) + " of " + bytes(data.object_size) + " in " +
        data.range_requests + " ranged request(s)" + (data.truncated ? " · " + (data.reason || "stopped at the byte limit") : "");
      for (const entry of data.lines) {
        const text = entry.record ? JSON.stringify(entry.record, null, 2) : entry.raw;
        const block = el("pre", { cls: entry.anomalous ? "record anomalous" : "record" });
        block.dataset.line = String(entry.line);
        if (entry.anomalous) {
          const type = entry.record.anomaly_type ? ": " + entry.record.anomaly_type : "";
          block.appendChild(el("span", { cls: "badge", text: "anomaly" + type }));
          block.appendChild(document.createTextNode("\n"));
        }
        block.appendChild(document.createTextNode(text));
        records.appendChild(block);
      }
    } catch (err) {
      if (request !== state.viewer.requests) return;
      meta.textContent = "";
      panelError(panel, "Reading the object failed: " + err.message);
    }
  }

  // --- partitions -------------------------------------------------------------------------------
  async function refreshPartitions() {
    const panel = document.getElementById("partitions");
    const body = panel.querySelector(".body");
    const bucket = document.getElementById("partitions-bucket").value;
    try {
      const data = await api(bucketPath(bucket, "/partitions"), {});
      panelError(panel, null);
      clear(body);
      document.getElementById("partitions-meta").textContent =
        num(data.objects) + " objects, " + bytes(data.bytes) + " · " +
        data.small_file_partitions + " hour partition(s) with small files (average under " +
        bytes(data.small_file_bytes) + ")" + (data.other_objects ? " · " + num(data.other_objects) + " objects outside service partitions" : "") +
        (data.uncounted_partitions ? " · records not counted in " + num(data.uncounted_partitions) + " hour partition(s)" : "") +
        (data.cut_short ? " · counting stopped at this request's limit (" + data.cut_reason + "); the next refresh goes on" : "");
      const rows = [];
      for (const service of data.services) {
        rows.push([
          cell(service.service, "service"), cell(""), cell(""),
          cell(num(service.objects), "num"), cell(bytes(service.bytes), "num"),
          cell(num(service.records), "num"), cell(""),
        ]);
        for (const day of service.days) {
          for (const hour of day.hours) {
            const warning = hour.small_files ? "small files (avg " + bytes(hour.avg_object_bytes) + ")" : "";
            rows.push([
              cell(""), cell(day.day), cell(hour.hour),
              cell(num(hour.objects), "num"), cell(bytes(hour.bytes), "num"),
              uncountedCell(hour), cell(warning, warning ? "warn" : ""),
            ]);
          }
        }
      }
      body.appendChild(table(["Service", "Day", "Hour", "Objects", "Bytes", "Records", "Warning"], rows));
    } catch (err) {
      panelError(panel, "Partition analysis failed: " + err.message);
    }
  }

  // --- curated tables -------------------------------------------------------------------------
  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, seconds);
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }

  async function refreshTables() {
    const panel = document.getElementById("tables");
    const body = panel.querySelector(".body");
    try {
      const data = await getJSON("/api/tables");
      panelError(panel, null);
      clear(body);
      document.getElementById("tables-meta").textContent =
        "Glue database " + data.namespace + " · " + data.tables.length + " table(s) · quarantined rows: " +
        (data.quarantined_rows === null ? "– (no quarantine table)" : num(data.quarantined_rows)) +
        " · figures from Iceberg metadata (snapshot summaries, manifests), no data scanned";
      if (!data.tables.length) {
        body.appendChild(el("p", { cls: "meta", text: "No curated tables yet: the ETL has not created them." }));
        return;
      }
      const rows = data.tables.map((t) => {
        const rowsCell = cell(num(t.rows), "num rows");
        rowsCell.dataset.count = String(t.rows);
        const newest = t.newest ? t.newest + " (" + age(t.freshness_seconds) + " ago)" : "–";
        const commit = t.last_commit ? t.last_commit + " (" + age(t.last_commit_age_seconds) + " ago)" : "–";
        return [
          cell(t.identifier, "table-name"),
          rowsCell,
          cell(num(t.data_files), "num files"),
          cell(bytes(t.total_bytes), "num"),
          cell(bytes(t.avg_file_bytes), "num avg"),
          cell(newest, "freshness"),
          cell(commit, "commit"),
          cell(num(t.snapshots), "num"),
          cell(t.error || ""),
        ];
      });
      const tbl = table(
        ["Table", "Rows", "Data files", "Bytes", "Avg file", "Newest (freshness)", "Last commit", "Snapshots", "Problems"],
        rows
      );
      tbl.querySelectorAll("tbody tr").forEach((tr, i) => {
        tr.dataset.table = data.tables[i].name;
      });
      body.appendChild(tbl);
    } catch (err) {
      panelError(panel, "Curated tables unavailable: " + err.message);
    }
  }

  // --- charts -----------------------------------------------------------------------------------
  const COLOURS = ["#0b5cc2", "#d62828", "#17663a", "#8a5a00", "#6a3d9a"];

  function makeChart(target, labels, yLabel) {
    const series = [{}].concat(
      labels.map((label, i) => ({ label: label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: false }))
    );
    const width = Math.max(300, target.clientWidth || 500);
    const opts = {
      width: width,
      height: 200,
      series: series,
      axes: [{}, { label: yLabel, size: 60 }],
      scales: { x: { time: true } },
    };
    const empty = [[]].concat(labels.map(() => []));
    return new uPlot(opts, empty, target);
  }

  async function refreshCharts() {
    const panel = document.getElementById("charts");
    if (typeof uPlot === "undefined") {
      panelError(panel, "The chart library did not load.");
      return;
    }
    try {
      const data = await getJSON("/api/timeseries");
      panelError(panel, null);
      document.getElementById("charts-note").textContent =
        data.t.length < 2 ? "Collecting samples (one every " + data.period_seconds + " s)…" : "";
      const streams = state.config.streams;
      if (!state.charts.throughput) {
        state.charts.throughput = makeChart(
          document.getElementById("throughput-chart"),
          streams.map((s) => s + " in").concat(["written to S3"]),
          "records/s"
        );
        state.charts.lag = makeChart(document.getElementById("lag-chart"), streams, "ms");
      }
      const throughput = [data.t].concat(streams.map((s) => data.records_in_per_s[s] || []), [data.records_out_per_s]);
      const lag = [data.t].concat(streams.map((s) => data.max_lag_ms[s] || []));
      state.charts.throughput.setData(throughput);
      state.charts.lag.setData(lag);
    } catch (err) {
      panelError(panel, "Charts unavailable: " + err.message);
    }
  }

  // --- startup ----------------------------------------------------------------------------------
  function fillBucketSelects(buckets) {
    for (const select of document.querySelectorAll(".bucket-select")) {
      for (const bucket of buckets) select.appendChild(el("option", { text: bucket }));
    }
    document.getElementById("partitions-bucket").addEventListener("change", refreshPartitions);
  }

  async function refreshAll() {
    await Promise.all([refreshConsumer(), refreshStreams(), refreshBuckets(), refreshPartitions(), refreshTables(), refreshCharts()]);
    document.getElementById("refreshed-at").textContent = new Date().toLocaleTimeString();
  }

  async function start() {
    try {
      state.config = await getJSON("/api/config");
    } catch (err) {
      for (const panel of document.querySelectorAll(".panel")) {
        const box = panel.querySelector(".error");
        if (box) panelError(panel, "Dashboard configuration unavailable: " + err.message);
      }
      return;
    }
    document.getElementById("refresh-period").textContent = String(state.config.refresh_seconds);
    document.getElementById("viewer-lines").max = String(state.config.viewer_max_lines);
    fillBucketSelects(state.config.buckets);
    setupBrowser();
    document.getElementById("viewer-lines").addEventListener("change", () => {
      if (state.viewer.key) openObject(state.viewer.bucket, state.viewer.key);
    });
    // The next refresh is planned when this one has finished, so slow answers never pile up.
    const period = state.config.refresh_seconds * 1000;
    const loop = async () => {
      await refreshAll();
      setTimeout(loop, period);
    };
    await loop();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
