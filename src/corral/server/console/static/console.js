// corral console: live updates of a session page by server-sent events. No framework, no build step.
// Everything inserted is HTML the server rendered (and escaped) with the page's own templates.
(function () {
  "use strict";
  var root = document.getElementById("session");
  if (!root || !window.EventSource) { return; }
  var source = new EventSource(root.getAttribute("data-live"));
  var parts = ["summary", "budget", "tx", "timeline", "composer"];

  function fragment(html) {
    var holder = document.createElement("template");
    holder.innerHTML = html.trim();
    return holder.content.firstElementChild;
  }

  function place(id, html) {
    var node = fragment(html);
    if (!node) { return; }
    var old = document.getElementById("call-" + id);
    if (old) { old.replaceWith(node); } else { document.getElementById("live").appendChild(node); }
    var none = document.getElementById("no-calls");
    if (none) { none.remove(); }
  }

  var refreshing = false, again = false;
  function refresh() {
    if (refreshing) { again = true; return; }  // once this one is done: what changed meanwhile
    refreshing = true;
    fetch(window.location.pathname, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) {
        if (answer.redirected && answer.url.indexOf("/login") !== -1) { window.location.assign(answer.url); }
        return answer.text();
      })
      .then(function (text) {
        var page = new DOMParser().parseFromString(text, "text/html");
        parts.forEach(function (id) {
          var now = document.getElementById(id), next = page.getElementById(id);
          if (!now || !next) { return; }
          if (id === "composer") {
            var box = document.getElementById("message");
            if (box && (box.value || document.activeElement === box)) {
              var fresh = next.querySelectorAll("textarea, button");
              now.querySelectorAll("textarea, button").forEach(function (el, i) {
                if (fresh[i]) { el.disabled = fresh[i].disabled; }
              });
              return;
            }
          }
          now.replaceWith(document.importNode(next, true));
        });
        document.getElementById("live").replaceChildren();
        var renewed = page.getElementById("session");
        if (renewed) { root.setAttribute("data-live", renewed.getAttribute("data-live")); }
      })
      .catch(function () { /* the next event or the next tick tries again */ })
      .finally(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  source.addEventListener("call", function (e) { var d = JSON.parse(e.data); place(d.id, d.html); });
  source.addEventListener("text", function (e) {
    var node = fragment(JSON.parse(e.data).html);
    if (node) { document.getElementById("live").appendChild(node); }
  });
  source.addEventListener("status", refresh);
  source.addEventListener("done", refresh);
  source.addEventListener("signed_out", function () {
    source.close();
    window.location.assign("/login?why=" + encodeURIComponent("signed out: your sign-in is no longer valid"));
  });
}());
