// Live output of a generation (inlined by detail.html): follows /generations/<id>/stream/ (server-sent events) and shows the
// text as it arrives. Events: chunk {text, completion_tokens}, done {status, finish_reason, output, usage},
// error {status, message, retry_after}. Without JavaScript the page refreshes itself instead.
(function () {
  "use strict";
  var root = document.getElementById("generation");
  if (!root || !window.EventSource) return;
  var output = document.getElementById("output");
  var badge = document.getElementById("status");
  var errorBox = document.getElementById("error");
  var usage = document.getElementById("usage");
  var labels = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  var source = null;
  var text = "";

  function setStatus(status) {
    badge.textContent = labels[status] || status;
    badge.className = "badge " + status;
    root.setAttribute("data-status", status);
  }

  function showText(value, live) {
    output.textContent = value;
    output.classList.toggle("pending", live);
    output.classList.toggle("streaming", live);
  }

  function showError(message) {
    errorBox.textContent = message || "";
    errorBox.hidden = !message;
  }

  function connect() {
    source = new EventSource(root.getAttribute("data-stream-url"));
    source.onopen = function () {
      text = "";  // a reconnected stream starts over: the generation is replayed from its beginning
    };
    source.addEventListener("chunk", function (event) {
      var data = JSON.parse(event.data);
      if (text === "") {
        setStatus("running");
        showError("");
      }
      text += data.text;
      showText(text, true);
    });
    source.addEventListener("done", function (event) {
      var data = JSON.parse(event.data);
      source.close();
      setStatus(data.status);
      showText(data.output, false);
      showError("");
      var parts = [data.usage.completion_tokens + " tokens", "finished: " + data.finish_reason];
      if (data.usage.time_to_first_token_ms !== null) {
        var ms = data.usage.time_to_first_token_ms;
        parts.push("first token after " + (ms < 10 ? ms.toFixed(1) : Math.round(ms)) + " ms");
      }
      usage.textContent = parts.join(" \u00b7 ");
      usage.hidden = false;
    });
    source.addEventListener("error", function (event) {
      if (!event.data) return;  // a dropped connection: EventSource reconnects by itself
      var data = JSON.parse(event.data);
      source.close();
      setStatus(data.status);
      showError(data.message);
      if (text === "") showText("", data.status === "queued");
      if (data.status === "queued") {
        // Waiting for a retry: look again when it is due (a background job runs it meanwhile).
        window.setTimeout(connect, Math.max(1, data.retry_after || 5) * 1000);
      }
    });
  }

  connect();
})();
