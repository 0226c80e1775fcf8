// Quorum dashboard: renders the plotly figures embedded in the page and drives the controls.
(function () {
  function renderPlots(root) {
    (root || document).querySelectorAll("div[data-fig]").forEach(function (div) {
      var src = document.getElementById(div.getAttribute("data-fig"));
      if (!src || !window.Plotly) return;
      var fig = JSON.parse(src.textContent);
      Plotly.react(div, fig.data, fig.layout, {displaylogo: false, responsive: true});
    });
  }
  function control(btn) {
    var status = document.getElementById("control-status");
    var reasonEl = document.getElementById("control-reason");
    var reason = reasonEl && reasonEl.value ? reasonEl.value : "dashboard operator";
    if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
    status.textContent = "…";
    fetch(btn.dataset.action, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-Quorum-Control": "1"},
      body: JSON.stringify({reason: reason})})
      .then(function (r) { return r.json().then(function (body) { return {ok: r.ok, code: r.status, body: body}; }); })
      .then(function (res) {
        status.className = res.ok ? "ok" : "refused";
        status.textContent = res.ok ? (res.body.message || "done") : ("refused (" + res.code + "): " + (res.body.detail || res.body.error || ""));
        if (res.ok && window.htmx) { var live = document.getElementById("live"); if (live) htmx.trigger(live, "refresh"); }
      })
      .catch(function (e) { status.className = "refused"; status.textContent = "failed: " + e; });
  }
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("button[data-action]");
    if (btn) { ev.preventDefault(); control(btn); }
  });
  document.addEventListener("DOMContentLoaded", function () { renderPlots(document); });
  document.addEventListener("htmx:afterSettle", function (ev) { renderPlots(ev.target); });
})();
