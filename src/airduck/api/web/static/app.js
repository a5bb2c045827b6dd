// airduck web browser: the little behaviour htmx does not cover (keyboard, downloads, confirmations, the lineage
// graph with cytoscape + dagre, the quality chart with uPlot). No build step: plain ES2017.
(function () {
  "use strict";
  const LAYER_COLORS = { source: "#0969da", bronze: "#b7702a", silver: "#6e7781", gold: "#bf8700", serve: "#8250df", other: "#57606a" };

  function onReady(fn) { if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn); }

  // SQL editor: Ctrl/Cmd+Enter runs; table names insert; downloads post the editor's text to /sql/download
  document.addEventListener("keydown", function (e) {
    if (e.target && e.target.id === "sql" && e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      e.target.form.requestSubmit();
    }
  });
  document.addEventListener("click", function (e) {
    const insert = e.target.closest("[data-insert]");
    if (insert) {
      e.preventDefault();
      const area = document.getElementById("sql");
      const at = area.selectionStart || area.value.length;
      area.value = area.value.slice(0, at) + insert.dataset.insert + area.value.slice(area.selectionEnd || at);
      area.focus();
    }
    const dl = e.target.closest("[data-download]");
    if (dl) {
      const form = document.getElementById("download-form");
      form.elements["sql"].value = document.getElementById("sql").value;
      form.elements["format"].value = dl.dataset.download;
      form.submit();
    }
  });
  // the branch menu: the same page on the chosen branch (the branch is in the URL: shareable, back/forward work)
  document.addEventListener("change", function (e) {
    if (!e.target || e.target.id !== "branch-select") return;
    const url = new URL(window.location.href);
    if (e.target.value === "main") url.searchParams.delete("branch"); else url.searchParams.set("branch", e.target.value);
    window.location.assign(url.pathname + url.search);
  });
  function withBranch(href) {
    const b = document.body.dataset.branch;
    return b ? href + (href.indexOf("?") < 0 ? "?" : "&") + "branch=" + encodeURIComponent(b) : href;
  }
  // forms that destroy something ask first
  document.addEventListener("submit", function (e) {
    const msg = e.target.dataset && e.target.dataset.confirm;
    if (msg && !window.confirm(msg)) e.preventDefault();
  }, true);

  function layout() {
    return { name: "dagre", rankDir: "LR", nodeSep: 14, rankSep: 70, edgeSep: 8, ranker: "network-simplex", padding: 20 };
  }

  function drawGraph(el) {
    if (!window.cytoscape) return;
    if (window.cytoscapeDagre && !drawGraph.registered) { window.cytoscape.use(window.cytoscapeDagre); drawGraph.registered = true; }
    el.textContent = "loading the graph…";
    fetch(el.dataset.src, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) return r.text().then(function (t) { throw new Error(t || r.statusText); });
      return r.json();
    }).then(function (g) {
      el.textContent = "";
      if (!g.nodes.length) { el.innerHTML = '<div class="empty" style="margin:1rem">The plan has no datasets yet.</div>'; return; }
      const elements = g.nodes.map(function (n) { return { data: n }; }).concat(g.edges.map(function (e) { return { data: e }; }));
      const cy = window.cytoscape({
        container: el, elements: elements, minZoom: 0.2, maxZoom: 2.5,
        style: [
          { selector: "node", style: { "shape": "round-rectangle", "background-color": function (n) { return LAYER_COLORS[n.data("layer")] || LAYER_COLORS.other; },
              "label": "data(label)", "color": "#fff", "font-size": 13, "font-family": "system-ui, sans-serif", "text-valign": "center", "text-halign": "center",
              "width": function (n) { return Math.max(60, 7.6 * String(n.data("label")).length + 20); }, "height": 30, "text-wrap": "none" } },
          { selector: "node[?focus]", style: { "border-width": 3, "border-color": "#1f6feb" } },
          { selector: "edge", style: { "width": 1.5, "line-color": "#afb8c1", "target-arrow-color": "#afb8c1", "target-arrow-shape": "triangle", "curve-style": "bezier", "arrow-scale": 0.9 } },
          { selector: "node:selected", style: { "border-width": 3, "border-color": "#101820" } }
        ],
        layout: layout()
      });
      cy.on("mouseover", "node[?table]", function () { el.style.cursor = "pointer"; });
      cy.on("mouseout", "node", function () { el.style.cursor = ""; });
      cy.on("tap", "node", function (evt) {
        const t = evt.target.data("table");
        if (t) window.location.href = withBranch("/tables/" + t);
      });
      el._cy = cy;
      el.dataset.ready = String(g.nodes.length);
    }).catch(function (err) {
      el.innerHTML = '<div class="alert error" role="alert" style="margin:1rem">The graph could not be loaded: ' + String(err.message).replace(/[<>&]/g, "") + "</div>";
    });
  }

  function drawQuality(el) {
    const src = document.getElementById("quality-data");
    if (!src || !window.uPlot) return;
    const data = JSON.parse(src.textContent);
    const palette = ["#1f6feb", "#cf222e", "#1a7f37", "#bf8700", "#8250df", "#0a3069", "#b7702a", "#57606a"];
    const series = [{ label: "run" }].concat(data.checks.map(function (name, i) {
      return { label: name, stroke: palette[i % palette.length], width: 2, points: { size: 6 } };
    }));
    const x = data.runs.map(function (_, i) { return i; });
    const opts = {
      width: Math.max(320, el.parentElement.clientWidth - 20), height: 280,
      scales: { x: { time: false, range: [-0.5, Math.max(x.length - 0.5, 0.5)] } },
      axes: [{ values: function (u, vals) { return vals.map(function (v) { return Number.isInteger(v) && data.labels[v] ? data.labels[v] : ""; }); } },
             { label: "failing rows" }],
      series: series
    };
    el._plot = new window.uPlot(opts, [x].concat(data.values), el);
  }

  function init(root) {
    root.querySelectorAll("#graph[data-src]").forEach(function (el) { if (!el._cy) drawGraph(el); });
    root.querySelectorAll("#quality-chart").forEach(function (el) { if (!el._plot) drawQuality(el); });
  }
  onReady(function () { init(document); });
  document.addEventListener("htmx:afterSettle", function (e) { init(e.target); });
})();
