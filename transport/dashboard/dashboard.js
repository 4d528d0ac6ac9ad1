"use strict";
// rillet's dashboard: one WebSocket subscription to the index, drawn as a table.
(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const HISTORY = 120;            // metric points kept per row for the plot
  const events = new Map();       // key -> latest event
  const history = new Map();      // key -> [[time ms, metric], ...]
  let socket = null;
  let selected = null;
  let generation = 0;

  const $ = (id) => document.getElementById(id);
  const keyOf = (e) => JSON.stringify([e.host, e.service]);

  function stateClass(state) {
    return ["ok", "warning", "critical"].includes(state) ? "state-" + state : "state-other";
  }

  function age(e) {
    const seconds = Math.max(0, (Date.now() - Date.parse(e.time)) / 1000);
    if (!isFinite(seconds)) return "";
    if (seconds < 60) return seconds.toFixed(0) + " s";
    if (seconds < 3600) return (seconds / 60).toFixed(0) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function formatMetric(m) {
    if (m === null || m === undefined) return "";
    return Number.isInteger(m) ? String(m) : Number(m).toPrecision(4);
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : text;
    if (cls) td.className = cls;
    return td;
  }

  function render() {
    const body = $("rows");
    const group = $("group").value;
    const sorted = [...events.entries()].sort((a, b) => {
      const [x, y] = [a[1], b[1]];
      const g = group ? String(x[group]).localeCompare(String(y[group])) : 0;
      return g || String(x.host).localeCompare(String(y.host))
               || String(x.service).localeCompare(String(y.service));
    });
    const fragment = document.createDocumentFragment();
    let current;
    for (const [key, e] of sorted) {
      if (group && e[group] !== current) {
        current = e[group];
        const header = document.createElement("tr");
        header.className = "group";
        const td = cell(group + ": " + (current ?? "(none)"));
        td.colSpan = 6;
        header.appendChild(td);
        fragment.appendChild(header);
      }
      const tr = document.createElement("tr");
      tr.className = "row " + stateClass(e.state) + (key === selected ? " selected" : "");
      tr.dataset.key = key;
      tr.dataset.host = e.host ?? "";
      tr.dataset.service = e.service ?? "";
      tr.dataset.state = e.state ?? "";
      tr.append(cell(e.host), cell(e.service), cell(e.state, "state"),
                cell(formatMetric(e.metric), "metric"), cell(e.description), cell(age(e), "age"));
      tr.addEventListener("click", () => { selected = key; render(); });
      fragment.appendChild(tr);
    }
    body.replaceChildren(fragment);
    $("empty").hidden = events.size > 0;
    plot();
  }

  function plot() {
    const box = $("plot-box");
    const points = selected && history.get(selected);
    if (!points || !events.has(selected)) { box.hidden = true; return; }
    box.hidden = false;
    const e = events.get(selected);
    $("plot-title").textContent = (e.host ?? "") + " " + (e.service ?? "") + ": metric";
    const canvas = $("plot");
    const g = canvas.getContext("2d");
    const [w, h, pad] = [canvas.width, canvas.height, 24];
    g.clearRect(0, 0, w, h);
    g.strokeStyle = "#d0d7de";
    g.strokeRect(pad, 4, w - pad - 4, h - pad - 4);
    if (points.length === 0) return;
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y0 -= 1; y1 += 1; }
    const X = (x) => pad + (x - x0) / (x1 - x0) * (w - pad - 8);
    const Y = (y) => h - pad - (y - y0) / (y1 - y0) * (h - pad - 12);
    g.fillStyle = "#57606a";
    g.font = "11px sans-serif";
    g.fillText(formatMetric(y1), 2, 14);
    g.fillText(formatMetric(y0), 2, h - pad);
    g.strokeStyle = "#0969da";
    g.lineWidth = 2;
    g.beginPath();
    points.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
    g.stroke();
    g.fillStyle = "#0969da";
    for (const [x, y] of points) g.fillRect(X(x) - 2, Y(y) - 2, 4, 4);
  }

  function receive(e) {
    const key = keyOf(e);
    if (e.state === "expired") {
      events.delete(key);
      history.delete(key);
      return;
    }
    events.set(key, e);
    if (typeof e.metric === "number") {
      const points = history.get(key) || [];
      points.push([Date.parse(e.time) || Date.now(), e.metric]);
      if (points.length > HISTORY) points.shift();
      history.set(key, points);
    }
  }

  function showError(text) {
    const box = $("error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function connect() {
    const mine = ++generation;
    if (socket) socket.close();
    events.clear();
    history.clear();
    render();
    showError("");
    const url = new URL("index", location.href.replace(/^http/, "ws"));
    url.pathname = "/index";
    url.search = "";
    url.searchParams.set("subscribe", "true");
    url.searchParams.set("query", $("query").value.trim() || "true");
    if (token) url.searchParams.set("token", token);
    socket = new WebSocket(url);
    let pending = false;
    socket.onopen = () => { $("status").textContent = "live"; };
    socket.onmessage = (message) => {
      receive(JSON.parse(message.data));
      if (!pending) {   // one redraw per animation frame, however many events arrive
        pending = true;
        requestAnimationFrame(() => { pending = false; render(); });
      }
    };
    socket.onclose = (close) => {
      if (mine !== generation) return;
      if (close.code === 1008) {
        showError(close.reason || "the server refused this query");
        $("status").textContent = "query refused";
        return;
      }
      $("status").textContent = "disconnected, retrying";
      setTimeout(() => { if (mine === generation) connect(); }, 2000);
    };
  }

  $("query").value = params.get("query") || "true";
  $("query-form").addEventListener("submit", (ev) => { ev.preventDefault(); connect(); });
  $("group").addEventListener("change", render);
  setInterval(render, 1000);  // ages move on even when no event arrives
  connect();
})();
