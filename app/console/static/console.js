// The console's own script: the CSRF header on htmx and fetch requests, dropping several QR
// screenshots at once (one request each, each result shown), and drag-and-drop reordering.
// Everything here is an enhancement: every action also works as a plain form without it.
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

  document.addEventListener("DOMContentLoaded", function () {
    setupUpload();
    setupSort();
  });
  // the groups table is replaced when its shape changes: make the new one sortable too
  document.addEventListener("htmx:afterSettle", setupSort);
  void sortable;
})();
