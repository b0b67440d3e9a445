// The console's own script: the CSRF header on htmx and fetch requests, dropping several QR
// screenshots at once (one request each, each result shown), drag-and-drop reordering, the
// statistics charts (uPlot, from the JSON in each chart's data-chart), the events feed's live
// additions, and small form helpers. Everything here is an enhancement: every action also works
// as a plain form without it, and every chart has its figures in a table beside it.
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  function refreshLive() {
    var poller = document.getElementById("pool-poller");
    if (poller && window.htmx) { window.htmx.trigger(poller, "refresh-now"); }
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken(), "HX-Request": "true" }
    });
  }

  // --- QR screenshots: one request per file, results listed as they come -------------------
  function setupUpload() {
    var form = document.getElementById("upload-form");
    if (!form) { return; }
    var input = document.getElementById("files");
    var zone = document.getElementById("dropzone");
    var results = document.getElementById("upload-results");

    function uploadAll(files) {
      if (!files || !files.length) { return; }
      var capacity = form.querySelector('input[name="capacity"]').value;
      var list = Array.prototype.slice.call(files);
      results.textContent = "";
      var chain = Promise.resolve();
      list.forEach(function (file) {
        chain = chain.then(function () {
          var body = new FormData();
          body.append("files", file, file.name);
          body.append("capacity", capacity);
          return post(form.getAttribute("action"), body).then(function (r) {
            return r.text().then(function (html) {
              if (r.status === 204 && r.headers.get("HX-Redirect")) {
                window.location.assign(r.headers.get("HX-Redirect"));
                return;
              }
              var doc = new DOMParser().parseFromString(html, "text/html");
              var items = doc.querySelectorAll("ul.upload-results > li");
              var ul = results.querySelector("ul") || results.appendChild(document.createElement("ul"));
              ul.className = "upload-results";
              if (!items.length) {
                var li = document.createElement("li");
                li.className = "bad";
                li.textContent = file.name + " → HTTP " + r.status;
                ul.appendChild(li);
              }
              items.forEach(function (item) { ul.appendChild(document.importNode(item, true)); });
            });
          });
        });
      });
      chain.then(function () { input.value = ""; refreshLive(); });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      uploadAll(input.files);
    });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      uploadAll(event.dataTransfer.files);
    });
    input.addEventListener("change", function () { uploadAll(input.files); });
  }

  // --- reorder by dragging (the arrow buttons are the keyboard's way) ----------------------
  var sortable = null;
  function setupSort() {
    var rows = document.getElementById("group-rows");
    if (!rows || !window.Sortable || rows.dataset.sortable) { return; }
    rows.dataset.sortable = "1";
    sortable = window.Sortable.create(rows, {
      handle: ".drag",
      animation: 150,
      onEnd: function () {
        var body = new URLSearchParams();
        rows.querySelectorAll("tr[data-id]").forEach(function (tr, i) {
          body.append("group_ids", tr.getAttribute("data-id"));
          var pos = tr.querySelector(".pos");
          if (pos) { pos.textContent = String(i + 1); }
        });
        post(rows.getAttribute("data-reorder"), body).then(refreshLive);
      }
    });
  }

  // --- charts ------------------------------------------------------------------------------
  // Fixed colours for the outcomes (the same line is the same colour on every page), a palette
  // for groups and channels; every colour has at least 4.5:1 contrast on white.
  var OUTCOME_COLOURS = {
    scans: "#1a5fd6", visitors: "#7c3aed", "new": "#07795a", sticky: "#0e7490",
    fallback: "#c2410c", paused: "#475569", limited: "#a16207"
  };
  var PALETTE = ["#1a5fd6", "#c2410c", "#07795a", "#7c3aed", "#a16207", "#0e7490",
                 "#be185d", "#4d7c0f", "#475569", "#9333ea"];

  function colourFor(key, i) {
    return OUTCOME_COLOURS[key] || PALETTE[i % PALETTE.length];
  }

  function chartHeight(width) {
    return width < 500 ? 220 : 280;
  }

  function drawChart(el) {
    if (el._uplot || !window.uPlot) { return; }
    var data = JSON.parse(el.getAttribute("data-chart"));
    var locale = el.getAttribute("data-locale") || document.documentElement.lang || "en";
    var hourly = data.step === "hour";
    var tz = data.tz;
    var tick = new Intl.DateTimeFormat(locale, hourly
      ? { timeZone: tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
      : { timeZone: tz, month: "numeric", day: "numeric" });
    var full = new Intl.DateTimeFormat(locale, hourly
      ? { timeZone: tz, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
          hourCycle: "h23" }
      : { timeZone: tz, weekday: "short", month: "short", day: "numeric" });
    var number = new Intl.NumberFormat(locale);
    var series = [{
      label: data.time_label,
      value: function (u, v) { return v == null ? "–" : full.format(new Date(v * 1000)); }
    }];
    var columns = [data.x];
    data.series.forEach(function (s, i) {
      series.push({
        label: s.label,
        stroke: colourFor(s.key, i),
        width: 2,
        dash: i >= PALETTE.length ? [8, 4] : undefined,
        points: { show: true, size: 5 },
        value: function (u, v) { return v == null ? "–" : number.format(v); }
      });
      columns.push(s.values);
    });
    var axisStroke = "#3b4049";
    var grid = { stroke: "#e3e5e8", width: 1 };
    var width = Math.max(el.clientWidth, 200);
    var chart = new window.uPlot({
      width: width,
      height: chartHeight(width),
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1e3), tz); },
      scales: {
        x: { time: true },
        y: { range: function (u, min, max) { return [0, Math.max(4, Math.ceil((max || 0) * 1.15))]; } }
      },
      axes: [
        {
          stroke: axisStroke, grid: grid, ticks: grid,
          values: function (u, splits) {
            return splits.map(function (v) { return tick.format(new Date(v * 1000)); });
          }
        },
        {
          stroke: axisStroke, grid: grid, ticks: grid, size: 52,
          incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000,
                  100000, 200000, 500000, 1000000],
          values: function (u, splits) {
            return splits.map(function (v) { return number.format(v); });
          }
        }
      ],
      series: series,
      cursor: { drag: { x: false, y: false, setScale: false } },
      legend: { live: true }
    }, columns, el);
    el._uplot = chart;
    if (window.ResizeObserver) {
      var observer = new window.ResizeObserver(function () {
        var w = Math.max(el.clientWidth, 200);
        if (Math.abs(w - chart.width) > 1) { chart.setSize({ width: w, height: chartHeight(w) }); }
      });
      observer.observe(el);
      el._observer = observer;
    }
  }

  function drawCharts(root) {
    (root || document).querySelectorAll("div.chart[data-chart]").forEach(drawChart);
  }

  function dropCharts(root) {
    root.querySelectorAll("div.chart[data-chart]").forEach(function (el) {
      if (el._observer) { el._observer.disconnect(); }
      if (el._uplot) { el._uplot.destroy(); }
    });
  }

  // the statistics panel refreshes itself: keep the table open if it was
  var tableOpen = false;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "stats-panel") {
      var box = document.getElementById("stats-table-box");
      tableOpen = !!(box && box.open);
      dropCharts(target);
    }
  });

  // --- events: live additions come in on top; one shown twice (it came in while the page
  // loaded) is shown once
  function dedupeEvents() {
    var list = document.getElementById("event-list");
    if (!list) { return; }
    var seen = {};
    list.querySelectorAll("li.event").forEach(function (li) {
      if (seen[li.id]) { li.remove(); } else { seen[li.id] = true; }
    });
  }

  // --- small form helpers ---------------------------------------------------------------------
  function setupForms() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        if (select.form) { select.form.requestSubmit(); }
      });
    });
    var zone = document.getElementById("p-tz");
    var other = document.getElementById("p-tz-other-box");
    if (zone && other) {
      var sync = function () {
        other.hidden = zone.value !== zone.getAttribute("data-other");
      };
      zone.addEventListener("change", function () {
        sync();
        if (!other.hidden) { document.getElementById("p-tz-other").focus(); }
      });
      sync();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupUpload();
    setupSort();
    setupForms();
    drawCharts();
  });
  document.addEventListener("htmx:oobAfterSwap", dedupeEvents);
  document.addEventListener("htmx:afterSettle", function () {
    // the groups table is replaced when its shape changes: make the new one sortable too
    setupSort();
    drawCharts();
    var box = document.getElementById("stats-table-box");
    if (box && tableOpen) { box.open = true; }
    dedupeEvents();
  });
  void sortable;
})();
