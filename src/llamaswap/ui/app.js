// llamaswap web UI: one ES module, no framework, nothing loaded from outside this server.
//
// Live state comes from one SSE stream (/api/events). Model logs come from the plain-text
// /logs/stream/<id>, the playground from /v1/chat/completions with stream:true. All three
// are read with the same small SSE/text readers, because EventSource cannot send an
// Authorization header: with an API key set, /api/events is read with fetch as well.

const KEY_STORAGE = "llamaswap.apiKey";
const MAX_ACTIVITY = 50;
const MAX_LOG_CHARS = 256 * 1024;
// The lifecycle specs (/api/specs): every state's colour, description and the commands
// (load, unload) that apply in it. Nothing here lists states.
const lifecycle = { process: new Map(), router: new Map() };

const $ = (selector) => document.querySelector(`[data-testid="${selector}"]`);

const view = {
  models: [], // from the last modelStatus
  queue: { queued: {}, inFlight: {} },
  busy: new Set(), // models with a load/unload request in progress
  rows: new Map(), // model id -> its <tr>
};

// ---------------------------------------------------------------- helpers

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function withAuth(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

/** A model ID as a URL path: IDs may contain "/", which the routes accept as is. */
function modelPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let noticeTimer = 0;
function notify(message, kind = "error") {
  const notice = $("notice");
  notice.textContent = message;
  notice.dataset.kind = kind;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (notice.hidden = true), kind === "error" ? 15000 : 5000);
}

/** The message of an error response: OpenAI-shaped JSON, or its text. */
async function errorText(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return `${response.status}: ${body?.error?.message ?? body?.message ?? text}`;
  } catch {
    return `${response.status}: ${text.trim() || response.statusText}`;
  }
}

/** Feed a response body to `onText` as decoded text, chunk by chunk, until it ends. */
async function readText(response, onText) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}

/** An SSE parser: returns a function taking text chunks; calls onEvent({event, data}). */
function sseParser(onEvent) {
  let buffer = "";
  let data = [];
  let event = "";
  return (chunk) => {
    buffer += chunk;
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (let line of lines) {
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (data.length) onEvent({ event: event || "message", data: data.join("\n") });
        data = [];
        event = "";
        continue;
      }
      if (line.startsWith(":")) continue; // a comment (keepalive)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") event = value;
    }
  };
}

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
  const response = await fetch("/api/specs", { headers: withAuth() });
  if (!response.ok) throw new Error(`/api/specs: ${response.status}`);
  const specs = await response.json();
  for (const kind of Object.keys(lifecycle)) {
    lifecycle[kind] = new Map(specs[kind].states.map((state) => [state.name, state]));
  }
  renderLegend(specs.process.states);
}

function renderLegend(states) {
  const legend = $("state-legend");
  legend.replaceChildren(
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
    source.onopen = () => setBadge($("connection"), "connected");
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
      const response = await fetch(url, {
        headers: withAuth({ Accept: "text/event-stream" }),
        cache: "no-store",
        signal,
      });
      if (!response.ok) throw new Error(await errorText(response));
      setBadge($("connection"), "connected");
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
      addActivity(data);
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
  updateModelChoices();
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
    const response = await fetch(`/api/models/${action}/${modelPath(id)}`, {
      method: "POST",
      headers: withAuth(),
    });
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
    const response = await fetch("/api/models/unload", { method: "POST", headers: withAuth() });
    if (!response.ok) notify(`unload all failed: ${await errorText(response)}`);
  } catch (error) {
    notify(`unload all failed: ${error.message}`);
  }
}

/** Keep the chat and log selects in step with the model list, keeping the choices made. */
let choiceKey = null;
function updateModelChoices() {
  const ids = view.models.map((model) => model.id);
  const key = JSON.stringify(ids);
  if (key === choiceKey) return; // rebuilding would close a select the user has open
  choiceKey = key;
  const chat = $("chat-model");
  const chosen = chat.value;
  chat.replaceChildren(...ids.map((id) => element("option", { value: id, text: id })));
  if (ids.includes(chosen)) chat.value = chosen;

  const logs = $("log-source");
  const source = logs.value;
  const fixed = [...logs.querySelectorAll("option[data-fixed]")];
  logs.replaceChildren(...fixed, ...ids.map((id) => element("option", { value: id, text: id })));
  logs.value = [...logs.options].some((option) => option.value === source) ? source : "";
}

// ---------------------------------------------------------------- queue, swaps, activity

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
  if (!rows.length) {
    rows.push(element("tr", { class: "empty" }, element("td", { colspan: "3", text: "Nothing waiting or running" })));
  }
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

function addActivity(item) {
  const body = $("activity-body");
  body.querySelector("tr.empty")?.remove();
  const time = new Date(item.at * 1000).toLocaleTimeString([], { hour12: false });
  const speed = typeof item.tokensPerSecond === "number" ? item.tokensPerSecond.toFixed(1) : "–";
  const row = element(
    "tr",
    { "data-testid": "activity-row", "data-model": item.model, "data-status": String(item.status) },
    element("td", { text: time }),
    element("td", { text: item.method }),
    element("td", { class: "id", text: item.path }),
    element("td", { class: "id", text: item.model }),
    element("td", { class: item.status < 400 ? "status-ok" : "status-bad", text: String(item.status) }),
    element("td", { class: "num", text: String(Math.round(item.duration * 1000)) }),
    element("td", { class: "num", text: speed }),
  );
  body.prepend(row);
  while (body.rows.length > MAX_ACTIVITY) body.lastElementChild.remove();
}

// ---------------------------------------------------------------- logs

let logController = null;
let logChars = 0;

function showLogs(id) {
  $("log-source").value = id;
  followLog(id);
  $("log-output").scrollIntoView({ block: "nearest" });
}

function appendLog(text) {
  const output = $("log-output");
  const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 24;
  output.append(text);
  logChars += text.length;
  if (logChars > MAX_LOG_CHARS) {
    output.textContent = output.textContent.slice(-MAX_LOG_CHARS / 2);
    logChars = output.textContent.length;
  }
  if (atBottom) output.scrollTop = output.scrollHeight;
}

/** Stream /logs/stream/<id> into the viewer: its history first, then live lines. */
async function followLog(id) {
  logController?.abort();
  logController = null;
  $("log-output").textContent = "";
  logChars = 0;
  if (!id) return;
  const controller = (logController = new AbortController());
  try {
    const response = await fetch(`/logs/stream/${modelPath(id)}`, {
      headers: withAuth(),
      cache: "no-store",
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    await readText(response, appendLog);
    appendLog("\n[log stream ended]\n");
  } catch (error) {
    if (!controller.signal.aborted) appendLog(`\n[log stream failed: ${error.message}]\n`);
  }
}

// ---------------------------------------------------------------- chat playground

const conversation = [];
let chatController = null;
let chatGeneration = 0; // bumped by Clear, so a reply that was cut off is not remembered

function addMessage(role, text) {
  const content = element("span", { class: "content", "data-testid": `chat-${role}`, text });
  const reasoning = element("span", { class: "reasoning", "data-testid": "chat-reasoning" });
  const message = element(
    "div",
    { class: `message ${role}` },
    element("span", { class: "who", text: role }),
    reasoning,
    content,
  );
  const transcript = $("chat-output");
  transcript.append(message);
  transcript.scrollTop = transcript.scrollHeight;
  return { message, content, reasoning };
}

/** Apply one streamed chat frame; returns the content text it added. */
function applyChunk(data, target) {
  if (data === "[DONE]") return "";
  let chunk;
  try {
    chunk = JSON.parse(data);
  } catch {
    return "";
  }
  if (chunk.error) throw new Error(chunk.error.message ?? JSON.stringify(chunk.error));
  const delta = chunk.choices?.[0]?.delta ?? {};
  if (delta.reasoning_content) target.reasoning.textContent += delta.reasoning_content;
  if (delta.content) target.content.textContent += delta.content;
  const transcript = $("chat-output");
  transcript.scrollTop = transcript.scrollHeight;
  return delta.content ?? "";
}

async function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const model = $("chat-model").value;
  const text = input.value.trim();
  if (!text || !model || chatController) return;
  input.value = "";
  conversation.push({ role: "user", content: text });
  addMessage("user", text);
  const target = addMessage("assistant", "");
  target.message.setAttribute("aria-busy", "true");
  const controller = (chatController = new AbortController());
  const generation = chatGeneration;
  $("chat-send").disabled = true;
  $("chat-stop").disabled = false;
  let answer = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: withAuth({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ model, messages: conversation, stream: true }),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    if ((response.headers.get("Content-Type") || "").includes("text/event-stream")) {
      await readText(response, sseParser((frame) => (answer += applyChunk(frame.data, target))));
    } else {
      const body = await response.json(); // an upstream that ignores stream:true
      answer = body.choices?.[0]?.message?.content ?? "";
      target.content.textContent = answer;
    }
  } catch (error) {
    target.message.classList.add("error");
    const why = controller.signal.aborted ? "[stopped]" : `[error: ${error.message}]`;
    target.content.textContent += (answer ? "\n" : "") + why;
  } finally {
    if (answer && generation === chatGeneration) conversation.push({ role: "assistant", content: answer });
    target.message.setAttribute("aria-busy", "false");
    target.message.dataset.done = "true";
    chatController = null;
    $("chat-send").disabled = false;
    $("chat-stop").disabled = true;
  }
}

function clearChat() {
  chatGeneration += 1;
  chatController?.abort();
  conversation.length = 0;
  $("chat-output").replaceChildren();
}

// ---------------------------------------------------------------- start

function start() {
  for (const option of $("log-source").options) option.dataset.fixed = "";
  const keyInput = $("api-key");
  keyInput.value = apiKey();
  $("api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    notify(key ? "API key saved in this browser" : "API key removed", "info");
    connectEvents();
    followLog($("log-source").value);
  });
  $("unload-all").addEventListener("click", unloadAll);
  $("log-source").addEventListener("change", (event) => followLog(event.target.value));
  $("log-clear").addEventListener("click", () => {
    $("log-output").textContent = "";
    logChars = 0;
  });
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-stop").addEventListener("click", () => chatController?.abort());
  $("chat-clear").addEventListener("click", clearChat);
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("chat-form").requestSubmit();
  });
  connectEvents();
  loadSpecs()
    .then(() => {
      renderModels(); // badges and buttons drawn before the specs arrived
      setBadge($("router-state"), $("router-state").textContent, "router");
    })
    .catch((error) => notify(`cannot read the lifecycle specs: ${error.message}`));
}

start();
