// llamaswap web UI: ES modules, no framework, nothing loaded from outside this server.
//
// Live state comes from one SSE stream (/api/events): models, queue, swaps, finished
// requests, requests in flight. The activity history comes from the activity store
// (/api/metrics/activity), logs from /logs/stream/<id>, the playground from
// /v1/chat/completions with stream:true. EventSource cannot send an Authorization
// header: with an API key set, /api/events is read with fetch as well.

import { activityChanged, refreshActivity, setupActivity, updateModelFilter } from "./activity.js";
import { setupHardware } from "./hardware.js";
import { applyInflight } from "./inflight.js";
import { currentLogSource, followLog, setupLogs, showLogs, updateLogChoices } from "./logs.js";
import { setupPlayground, updateChoices } from "./playground.js";
import { $, apiKey, element, errorText, modelPath, notify, readText, sleep, sseParser, storeApiKey, credentials, withAuth } from "./util.js";

// The lifecycle specs (/api/specs): every state's colour, description and the commands
// (load, unload) that apply in it. Nothing here lists states.
const lifecycle = { process: new Map(), router: new Map() };

const view = {
  models: [], // from the last modelStatus
  queue: { queued: {}, inFlight: {} },
  busy: new Set(), // models with a load/unload request in progress
  rows: new Map(), // model id -> its <tr>
};

function setBadge(badge, state, kind = "") {
  badge.textContent = state;
  badge.dataset.state = state;
  const spec = lifecycle[kind]?.get(state);
  if (spec) {
    badge.dataset.spec = kind;
    badge.style.setProperty("--state-colour", spec.colour);
    badge.title = spec.description;
  }
}

function allows(state, command) {
  return lifecycle.process.get(state)?.commands.includes(command) ?? false;
}

async function loadSpecs() {
  const response = await fetch("/api/specs", { credentials: credentials(), headers: withAuth() });
  if (!response.ok) throw new Error(`/api/specs: ${response.status}`);
  const specs = await response.json();
  for (const kind of Object.keys(lifecycle)) {
    lifecycle[kind] = new Map(specs[kind].states.map((state) => [state.name, state]));
  }
  renderLegend(specs.process.states);
}

function renderLegend(states) {
  $("state-legend").replaceChildren(
    ...states.map((state) => {
      const badge = element("span", { class: "badge", "data-testid": "legend-state" });
      setBadge(badge, state.name, "process");
      return element("li", {}, badge, element("span", { text: ` ${state.description}` }));
    }),
  );
}

// ---------------------------------------------------------------- /api/events

let closeEvents = () => {};

function connectEvents() {
  closeEvents();
  setBadge($("connection"), "connecting");
  const url = "/api/events?no-history"; // logs have their own viewer
  if (!apiKey()) {
    const source = new EventSource(url);
    source.onopen = () => {
      setBadge($("connection"), "connected");
      refreshActivity(); // what finished while we were away
    };
    source.onmessage = (message) => handleEvent(JSON.parse(message.data));
    source.onerror = () => {
      const closed = source.readyState === EventSource.CLOSED;
      setBadge($("connection"), closed ? "disconnected" : "connecting");
      if (closed) notify("The event stream was refused: is an API key needed?");
    };
    closeEvents = () => source.close();
    return;
  }
  const controller = new AbortController();
  closeEvents = () => controller.abort();
  followEvents(url, controller.signal);
}

/** /api/events over fetch (so it can carry the API key), reconnecting with backoff. */
async function followEvents(url, signal) {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const response = await fetch(url, { credentials: credentials(), headers: withAuth({ Accept: "text/event-stream" }), cache: "no-store", signal });
      if (!response.ok) throw new Error(await errorText(response));
      setBadge($("connection"), "connected");
      refreshActivity();
      delay = 1000;
      await readText(response, sseParser((frame) => handleEvent(JSON.parse(frame.data))));
    } catch (error) {
      if (signal.aborted) return;
      notify(`Event stream: ${error.message}`);
    }
    setBadge($("connection"), "connecting");
    await sleep(delay);
    delay = Math.min(delay * 2, 15000);
  }
}

function handleEvent({ type, data }) {
  switch (type) {
    case "modelStatus":
      view.models = data.models;
      renderModels();
      break;
    case "routerState":
      setBadge($("router-state"), data.state, "router");
      break;
    case "queue":
      view.queue = data;
      renderQueue();
      renderModels();
      break;
    case "swap":
      renderSwap(data);
      break;
    case "activity":
      activityChanged();
      break;
    case "inflight":
      applyInflight(typeof data === "string" ? JSON.parse(data) : data);
      break;
    default:
      break; // logData and anything newer: the log viewer reads /logs/stream instead
  }
}

// ---------------------------------------------------------------- models

function renderModels() {
  const body = $("models-body");
  const ids = new Set(view.models.map((model) => model.id));
  for (const [id, row] of view.rows) {
    if (!ids.has(id)) {
      row.remove();
      view.rows.delete(id);
    }
  }
  body.querySelector("tr.empty")?.remove();
  if (!view.models.length) {
    body.append(element("tr", { class: "empty" }, element("td", { colspan: "6", text: "No models configured" })));
  }
  for (const model of view.models) {
    let row = view.rows.get(model.id);
    if (!row) {
      row = modelRow(model.id);
      view.rows.set(model.id, row);
    }
    body.append(row); // keeps the server's order; moving a row keeps its focus
    updateRow(row, model);
  }
  updateChoices(view.models);
  updateLogChoices(view.models.map((model) => model.id));
  updateModelFilter(view.models);
}

function modelRow(id) {
  const button = (testid, label, className, onClick) => {
    const node = element("button", { type: "button", "data-testid": testid, class: className, "aria-label": `${label} ${id}` });
    node.textContent = label;
    node.addEventListener("click", onClick);
    return node;
  };
  return element(
    "tr",
    { "data-testid": "model-row", "data-model": id },
    element("td", { class: "id", text: id }),
    element("td", { "data-testid": "model-name" }),
    element(
      "td",
      {},
      element("span", { class: "badge", "data-testid": "model-state" }),
      element("div", { class: "reason", "data-testid": "model-reason", hidden: "" }),
    ),
    element("td", { class: "num counts", "data-testid": "model-queued" }),
    element("td", { class: "num counts", "data-testid": "model-inflight" }),
    element(
      "td",
      { class: "actions" },
      button("load", "Load", "", () => modelAction("load", id)),
      button("unload", "Unload", "secondary", () => modelAction("unload", id)),
      button("logs", "Logs", "secondary", () => showLogs(id)),
    ),
  );
}

function updateRow(row, model) {
  const name = row.querySelector('[data-testid="model-name"]');
  name.textContent = model.name || "";
  name.title = model.description || "";
  if (model.unlisted) name.append(element("span", { class: "badge", text: "unlisted" }));
  const badge = row.querySelector('[data-testid="model-state"]');
  setBadge(badge, model.state, "process");
  const reason = row.querySelector('[data-testid="model-reason"]');
  reason.textContent = model.reason || "";
  reason.hidden = !model.reason;
  if (model.reason) badge.title = model.reason;
  row.querySelector('[data-testid="model-queued"]').textContent = view.queue.queued[model.id] ?? 0;
  row.querySelector('[data-testid="model-inflight"]').textContent = view.queue.inFlight[model.id] ?? 0;
  const busy = view.busy.has(model.id);
  row.querySelector('[data-testid="load"]').disabled = busy || !allows(model.state, "load");
  row.querySelector('[data-testid="unload"]').disabled = busy || !allows(model.state, "unload");
  row.setAttribute("aria-busy", String(busy));
}

async function modelAction(action, id) {
  view.busy.add(id);
  renderModels();
  try {
    const response = await fetch(`/api/models/${action}/${modelPath(id)}`, { method: "POST", credentials: credentials(), headers: withAuth() });
    if (!response.ok) notify(`${action} ${id} failed: ${await errorText(response)}`);
  } catch (error) {
    notify(`${action} ${id} failed: ${error.message}`);
  } finally {
    view.busy.delete(id);
    renderModels();
  }
}

async function unloadAll() {
  try {
    const response = await fetch("/api/models/unload", { method: "POST", credentials: credentials(), headers: withAuth() });
    if (!response.ok) notify(`unload all failed: ${await errorText(response)}`);
  } catch (error) {
    notify(`unload all failed: ${error.message}`);
  }
}

// ---------------------------------------------------------------- queue, swaps

function renderQueue() {
  const { queued, inFlight } = view.queue;
  const ids = [...new Set([...Object.keys(queued), ...Object.keys(inFlight)])]
    .filter((id) => (queued[id] ?? 0) + (inFlight[id] ?? 0) > 0)
    .sort();
  const rows = ids.map((id) =>
    element(
      "tr",
      { "data-testid": "queue-row", "data-model": id },
      element("td", { class: "id", text: id }),
      element("td", { class: "num", text: String(queued[id] ?? 0) }),
      element("td", { class: "num", text: String(inFlight[id] ?? 0) }),
    ),
  );
  if (!rows.length) rows.push(element("tr", { class: "empty" }, element("td", { colspan: "3", text: "Nothing waiting or running" })));
  $("queue-body").replaceChildren(...rows);
}

function renderSwap(swap) {
  let text;
  if (swap.phase === "started") {
    const evict = swap.evict?.length ? `, stopping ${swap.evict.join(", ")}` : "";
    text = `Loading ${swap.target}${evict}…`;
  } else if (swap.error) {
    text = `Loading ${swap.target} failed: ${swap.error}`;
    notify(text);
  } else {
    text = `${swap.target} ready after ${Number(swap.seconds).toFixed(1)} s`;
  }
  $("swap").textContent = text;
}

// ---------------------------------------------------------------- start

function start() {
  const keyInput = $("api-key");
  keyInput.value = apiKey();
  $("api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    storeApiKey(key);
    notify(key ? "API key saved in this browser" : "API key removed", "info");
    connectEvents();
    followLog(currentLogSource());
    refreshActivity();
  });
  $("unload-all").addEventListener("click", unloadAll);
  setupLogs();
  setupPlayground();
  setupActivity();
  connectEvents();
  refreshActivity();
  setupHardware();
  loadSpecs()
    .then(() => {
      renderModels(); // badges and buttons drawn before the specs arrived
      setBadge($("router-state"), $("router-state").textContent, "router");
    })
    .catch((error) => notify(`cannot read the lifecycle specs: ${error.message}`));
}

start();
