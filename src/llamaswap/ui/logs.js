// The log viewer: /logs/stream/<source> (history, then live), kept as lines so it can be
// filtered by text and by level without asking the server again.

import { $, errorText, modelPath, readText, credentials, withAuth } from "./util.js";

const MAX_LINES = 5000;
const LEVELS = { DEBUG: 10, INFO: 20, WARN: 30, WARNING: 30, ERROR: 40 };
const LEVEL = /\[(DEBUG|INFO|WARN|WARNING|ERROR)\]/;

let lines = [];
let partial = "";
let controller = null;

function levelOf(line) {
  const match = LEVEL.exec(line);
  return match ? LEVELS[match[1]] : 0; // upstream output has no level
}

function visible(line) {
  const text = $("log-filter").value.trim().toLowerCase();
  const minimum = Number($("log-level").value || 0);
  if (minimum && levelOf(line) < minimum) return false;
  return !text || line.toLowerCase().includes(text);
}

function render() {
  const output = $("log-output");
  const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 24;
  const shown = lines.filter(visible);
  output.textContent = shown.length ? `${shown.join("\n")}\n` : "";
  if (atBottom) output.scrollTop = output.scrollHeight;
}

let scheduled = false;
function scheduleRender() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    render();
  });
}

function append(text) {
  const parts = (partial + text).split("\n");
  partial = parts.pop();
  lines.push(...parts);
  if (lines.length > MAX_LINES) lines = lines.slice(-MAX_LINES);
  scheduleRender();
}

function note(text) {
  lines.push(text);
  scheduleRender();
}

/** Stream /logs/stream/<id> into the viewer: its history first, then live lines. */
export async function followLog(id) {
  controller?.abort();
  controller = null;
  lines = [];
  partial = "";
  render();
  if (!id) return;
  const mine = (controller = new AbortController());
  try {
    const response = await fetch(`/logs/stream/${modelPath(id)}`, { credentials: credentials(), headers: withAuth(), cache: "no-store", signal: mine.signal });
    if (!response.ok) throw new Error(await errorText(response));
    await readText(response, append);
    note("[log stream ended]");
  } catch (error) {
    if (!mine.signal.aborted) note(`[log stream failed: ${error.message}]`);
  }
}

export function showLogs(id) {
  $("log-source").value = id;
  followLog(id);
  $("log-output").scrollIntoView({ block: "nearest" });
}

let choiceKey = null;
export function updateLogChoices(ids) {
  const key = JSON.stringify(ids);
  if (key === choiceKey) return;
  choiceKey = key;
  const select = $("log-source");
  const source = select.value;
  const fixed = [...select.querySelectorAll("option[data-fixed]")];
  select.replaceChildren(...fixed, ...ids.map((id) => new Option(id, id)));
  select.value = [...select.options].some((option) => option.value === source) ? source : "";
}

export function setupLogs() {
  for (const option of $("log-source").options) option.dataset.fixed = "";
  $("log-source").addEventListener("change", (event) => followLog(event.target.value));
  $("log-clear").addEventListener("click", () => {
    lines = [];
    render();
  });
  $("log-filter").addEventListener("input", scheduleRender);
  $("log-level").addEventListener("change", render);
}

export function currentLogSource() {
  return $("log-source").value;
}
