// Small helpers every panel of the UI shares: DOM building, the API key, fetch helpers.

const KEY_STORAGE = "llamaswap.apiKey";

export const $ = (selector) => document.querySelector(`[data-testid="${selector}"]`);

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function storeApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** With a stored key the page authenticates with it alone ("omit": a wrong key is an
 *  error to show, never the browser's Basic-auth prompt); without one, the browser's
 *  own Basic-auth credentials for this origin go along. */
export function credentials() {
  return apiKey() ? "omit" : "same-origin";
}

export function withAuth(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

/** A model ID as a URL path: IDs may contain "/", which the routes accept as is. */
export function modelPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

export function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let noticeTimer = 0;
export function notify(message, kind = "error") {
  const notice = $("notice");
  notice.textContent = message;
  notice.dataset.kind = kind;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (notice.hidden = true), kind === "error" ? 15000 : 5000);
}

/** The message of an error response: OpenAI-shaped JSON, or its text. */
export async function errorText(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return `${response.status}: ${body?.error?.message ?? body?.message ?? text}`;
  } catch {
    return `${response.status}: ${text.trim() || response.statusText}`;
  }
}

/** GET a JSON document with the stored key; throws with the server's message. */
export async function getJSON(url) {
  const response = await fetch(url, { credentials: credentials(), headers: withAuth(), cache: "no-store" });
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

/** Feed a response body to `onText` as decoded text, chunk by chunk, until it ends. */
export async function readText(response, onText) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}

/** An SSE parser: returns a function taking text chunks; calls onEvent({event, data}). */
export function sseParser(onEvent) {
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

/** Calls `fn` at most once per `ms`, with the last arguments (trailing edge). */
export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

export function formatNumber(value, digits = 0) {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return "–";
  return value.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function formatBytes(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

/** HTTP statuses that mean "stopped on purpose" rather than "failed". */
export function isStopped(status) {
  return status === 499;
}
