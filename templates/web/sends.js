// The send page's figures, kept current while the send runs: every 1.5 s it reads
// /sends/NAME/progress (this app's own JSON) and fills the elements marked
// data-progress="field". When the run starts or ends, or the send's state changes, it
// reloads the page, whose buttons follow the ledger. Without it, the page refreshes.
(function () {
  "use strict";
  var root = document.querySelector("[data-progress-url]");
  if (!root || !window.fetch) return;
  var url = root.getAttribute("data-progress-url");
  var state = root.getAttribute("data-state");
  var running = root.getAttribute("data-running") === "yes";
  function show(figures) {
    var marked = document.querySelectorAll("[data-progress]");
    for (var i = 0; i < marked.length; i++) {
      var value = figures[marked[i].getAttribute("data-progress")];
      if (value === undefined) continue;
      marked[i].textContent = typeof value === "number" ? value.toLocaleString("en") : value;
    }
  }
  function tick() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (answer) { return answer.json(); })
      .then(function (figures) {
        show(figures);
        if (figures.running !== running || figures.state !== state) {
          window.location.reload();
          return;
        }
        window.setTimeout(tick, 1500);
      })
      .catch(function () { window.setTimeout(tick, 5000); });
  }
  window.setTimeout(tick, 1500);
})();
