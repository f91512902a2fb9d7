// The Activity panel: requests from the activity store (/api/metrics/activity), so the
// history survives a reload; token columns, a model filter, paging, totals
// (/api/metrics/stats) and a viewer for captures (/api/captures/<id>).

import { $, debounce, element, formatNumber, getJSON, isStopped, notify } from "./util.js";

const PAGE_SIZE = 20;
const state = { page: 1, model: "", totalPages: 0 };

function statusCell(row) {
  const status = row.resp_status_code;
  if (isStopped(status)) return element("td", { class: "status-stopped", text: "stopped", title: "499: the client or an operator stopped it" });
  return element("td", { class: status < 400 ? "status-ok" : "status-bad", text: String(status), title: row.error_msg ?? "" });
}

function speed(value) {
  return formatNumber(value, 1);
}

function activityRow(row) {
  const tokens = row.tokens ?? {};
  const when = new Date(row.timestamp);
  const capture = row.has_capture
    ? element("button", { type: "button", class: "secondary small", "data-testid": "view-capture", "aria-label": `Capture of request ${row.id}` })
    : element("span", { class: "muted", text: "–" });
  if (row.has_capture) {
    capture.textContent = "View";
    capture.addEventListener("click", () => showCapture(row.id));
  }
  return element(
    "tr",
    { "data-testid": "activity-row", "data-id": String(row.id), "data-model": row.model, "data-status": String(row.resp_status_code) },
    element("td", { class: "num", text: String(row.id) }),
    element("td", { text: when.toLocaleTimeString([], { hour12: false }), title: when.toLocaleString() }),
    element("td", { class: "id", text: row.model }),
    element("td", { class: "id", text: row.req_path }),
    statusCell(row),
    element("td", { class: "num", "data-testid": "activity-input", text: formatNumber(tokens.input_tokens) }),
    element("td", { class: "num", "data-testid": "activity-cached", text: formatNumber(tokens.cache_tokens) }),
    element("td", { class: "num", "data-testid": "activity-output", text: formatNumber(tokens.output_tokens) }),
    element("td", { class: "num", text: speed(tokens.prompt_per_second) }),
    element("td", { class: "num", "data-testid": "activity-speed", text: speed(tokens.tokens_per_second) }),
    element("td", { class: "num", text: formatNumber(row.duration_ms) }),
    element("td", {}, capture),
  );
}

function query() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), page: String(state.page) });
  if (state.model) params.append("model", state.model);
  return params;
}

export async function refreshActivity() {
  try {
    const page = await getJSON(`/api/metrics/activity?${query()}`);
    if (page.total_pages && state.page > page.total_pages) {
      state.page = page.total_pages; // the rows we were looking at were pruned
      return refreshActivity();
    }
    state.totalPages = page.total_pages;
    const rows = page.data.map(activityRow);
    if (!rows.length) rows.push(element("tr", { class: "empty" }, element("td", { colspan: "12", text: "No requests yet" })));
    $("activity-body").replaceChildren(...rows);
    $("activity-page").textContent = page.total ? `page ${page.page} of ${page.total_pages} (${page.total} requests)` : "";
    $("activity-prev").disabled = state.page <= 1;
    $("activity-next").disabled = state.page >= page.total_pages;
    await refreshStats();
  } catch (error) {
    notify(`activity: ${error.message}`);
  }
}

async function refreshStats() {
  const params = state.model ? `?${new URLSearchParams({ model: state.model })}` : "";
  const stats = await getJSON(`/api/metrics/stats${params}`);
  const generation = stats.gen_histogram;
  const parts = [
    `${formatNumber(stats.total_requests)} requests`,
    `${formatNumber(stats.total_input_tokens)} prompt tokens`,
    `${formatNumber(stats.total_cache_tokens)} cached`,
    `${formatNumber(stats.total_output_tokens)} generated`,
  ];
  if (generation) parts.push(`generation p50 ${speed(generation.p50)} t/s, p95 ${speed(generation.p95)} t/s`);
  $("activity-stats").textContent = parts.join(" · ");
}

/** New requests finished: reload the first page (later pages would shift under the reader). */
export const activityChanged = debounce(() => {
  if (state.page === 1) refreshActivity();
}, 250);

let modelKey = "";
export function updateModelFilter(models) {
  const ids = models.map((m) => m.id);
  const key = JSON.stringify(ids);
  if (key === modelKey) return;
  modelKey = key;
  const select = $("activity-model");
  const chosen = select.value;
  select.replaceChildren(element("option", { value: "", text: "all models" }), ...ids.map((id) => element("option", { value: id, text: id })));
  select.value = ids.includes(chosen) ? chosen : "";
}

// ---------------------------------------------------------------- captures

function decode(base64) {
  if (!base64) return "";
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function headers(map) {
  return Object.entries(map ?? {})
    .map(([name, value]) => `${name}: ${value}`)
    .join("\n");
}

async function showCapture(id) {
  try {
    const capture = await getJSON(`/api/captures/${id}`);
    $("capture-title").textContent = `Request ${id}: ${capture.req_path}`;
    $("capture-req-headers").textContent = headers(capture.req_headers);
    $("capture-req-body").textContent = capture.req_body === null ? "(not kept for this route)" : pretty(decode(capture.req_body));
    $("capture-resp-headers").textContent = headers(capture.resp_headers);
    let response = capture.resp_body === null ? "(not kept for this route)" : pretty(decode(capture.resp_body));
    if (capture.resp_truncated) response = `(only the last part of ${capture.resp_bytes} bytes was kept)\n${response}`;
    $("capture-resp-body").textContent = response;
    $("capture-dialog").showModal();
  } catch (error) {
    notify(`capture ${id}: ${error.message}`);
  }
}

export function setupActivity() {
  $("activity-model").addEventListener("change", (event) => {
    state.model = event.target.value;
    state.page = 1;
    refreshActivity();
  });
  $("activity-prev").addEventListener("click", () => {
    state.page = Math.max(1, state.page - 1);
    refreshActivity();
  });
  $("activity-next").addEventListener("click", () => {
    state.page += 1;
    refreshActivity();
  });
  $("capture-close").addEventListener("click", () => $("capture-dialog").close());
}
