// Draws every chart of a page from the JSON the server put next to it (no build step, no network).
// Time series: x = days (unix seconds); per series its values, the detector's band (low..high, filled) and the
// anomalies as red points. Hover shows values (uPlot's legend); dragging zooms a range, which is written back to
// the URL (since/until) so the zoomed view can be shared; double-click resets.
(function () {
  "use strict";
  var COLORS = ["#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457", "#4e342e", "#37474f"];

  function fmtDay(ts) {
    return new Date(ts * 1000).toISOString().slice(0, 10);
  }

  function timeChart(el, spec) {
    var data = [spec.x];
    var series = [{ value: function (u, v) { return v == null ? "" : fmtDay(v); } }];
    var bands = [];
    spec.series.forEach(function (s, i) {
      var c = COLORS[i % COLORS.length];
      var base = data.length;
      data.push(s.values, s.high, s.low, s.anomaly);
      series.push({ label: s.label, stroke: c, width: 1.5, spanGaps: true, points: { size: 3 } });
      series.push({ label: "expected high", stroke: c + "55", width: 0.5, dash: [4, 4], spanGaps: false, points: { show: false } });
      series.push({ label: "expected low", stroke: c + "55", width: 0.5, dash: [4, 4], spanGaps: false, points: { show: false } });
      series.push({ label: "anomaly", stroke: "#c62828", width: 0, paths: function () { return null; },
                    points: { show: true, size: 9, fill: "#c62828", stroke: "#c62828" } });
      bands.push({ series: [base + 1, base + 2], fill: c + "22" });
    });
    var opts = {
      width: Math.max(320, el.clientWidth || 900),
      height: el.classList.contains("small-chart") ? 200 : 360,
      series: series,
      bands: bands,
      scales: { x: { time: true } },
      axes: [{}, { size: 70 }],
      cursor: { drag: { x: true, y: false } },
      hooks: {
        setSelect: [function (u) {
          if (u.select.width < 5 || !document.getElementById("explorer-form")) return;
          var lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
          var q = new URLSearchParams(window.location.search);
          q.set("since", fmtDay(lo)); q.set("until", fmtDay(hi));
          window.history.replaceState(null, "", "?" + q.toString());
          var f = document.getElementById("explorer-form");
          f.since.value = fmtDay(lo); f.until.value = fmtDay(hi);
        }],
      },
    };
    var u = new uPlot(opts, data, el);
    el.uplot = u;
    return u;
  }

  function histChart(el, spec) {
    var data = [spec.x];
    var series = [{ label: "score" }];
    spec.series.forEach(function (s, i) {
      data.push(s.values);
      series.push({ label: s.label, stroke: COLORS[i], fill: COLORS[i] + "33", width: 1.5,
                    paths: uPlot.paths.stepped({ align: 0 }), points: { show: false } });
    });
    var u = new uPlot({ width: Math.max(320, el.clientWidth || 900), height: 260, series: series,
                        scales: { x: { time: false } }, axes: [{}, { size: 60 }] }, data, el);
    el.uplot = u;
    return u;
  }

  document.querySelectorAll("[data-chart-id]").forEach(function (el) {
    var src = document.getElementById(el.getAttribute("data-chart-id"));
    if (!src) return;
    var spec = JSON.parse(src.textContent);
    (el.getAttribute("data-kind") === "hist" ? histChart : timeChart)(el, spec);
    el.setAttribute("data-ready", "1");
  });
})();
