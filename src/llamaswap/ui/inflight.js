// The requests in flight, from llama-swap's `inflight` frames, each with a Cancel button
// (POST /api/inflight/<id>/cancel: the client gets a clean end, the row goes away).

import { $, element, errorText, formatBytes, notify, credentials, withAuth } from "./util.js";

const requests = new Map(); // id -> llama-swap's in-flight entry
let ticker = 0;

export function applyInflight(update) {
  switch (update.operation) {
    case "snapshot":
      requests.clear();
      for (const entry of update.requests ?? []) requests.set(entry.id, { ...entry, seen: performance.now() });
      break;
    case "upsert":
      requests.set(update.request.id, { ...update.request, seen: performance.now() });
      break;
    case "remove":
      requests.delete(update.id);
      break;
    default:
      return;
  }
  render();
}

async function cancel(id, button) {
  button.disabled = true;
  try {
    const response = await fetch(`/api/inflight/${encodeURIComponent(id)}/cancel`, { method: "POST", credentials: credentials(), headers: withAuth() });
    if (!response.ok) throw new Error(await errorText(response));
  } catch (error) {
    button.disabled = false;
    notify(`cancel ${id}: ${error.message}`);
  }
}

function elapsed(entry) {
  const ms = entry.elapsed_ms + (performance.now() - entry.seen);
  return `${(ms / 1000).toFixed(1)} s`;
}

function render() {
  const rows = [...requests.values()]
    .sort((a, b) => Number(a.id) - Number(b.id))
    .map((entry) => {
      const button = element("button", { type: "button", class: "secondary small", "data-testid": "cancel-inflight", "aria-label": `Cancel request ${entry.id}` });
      button.textContent = "Cancel";
      button.addEventListener("click", () => cancel(entry.id, button));
      return element(
        "tr",
        { "data-testid": "inflight-row", "data-id": entry.id, "data-model": entry.model },
        element("td", { class: "num", text: entry.id }),
        element("td", { class: "id", text: entry.model }),
        element("td", { class: "id", text: `${entry.method} ${entry.req_path}` }),
        element("td", { text: entry.remote_ip }),
        element("td", { class: "num", "data-testid": "inflight-elapsed", text: elapsed(entry) }),
        element("td", { class: "num", text: formatBytes(entry.resp_bytes) }),
        element("td", {}, button),
      );
    });
  if (!rows.length) rows.push(element("tr", { class: "empty" }, element("td", { colspan: "7", text: "No requests in flight" })));
  $("inflight-body").replaceChildren(...rows);
  clearInterval(ticker);
  if (requests.size) {
    ticker = setInterval(() => {
      for (const cell of document.querySelectorAll('[data-testid="inflight-elapsed"]')) {
        const entry = requests.get(cell.closest("tr").dataset.id);
        if (entry) cell.textContent = elapsed(entry);
      }
    }, 500);
  }
}
