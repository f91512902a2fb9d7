// The chat playground: a system prompt, sampling settings, streamed answers rendered as
// markdown (marked, then sanitised by DOMPurify), and Stop, which ends an answer as
// "stopped", not as an error.

import { marked } from "./vendor/marked/marked.esm.js";
import DOMPurify from "./vendor/dompurify/purify.es.js";
import { $, credentials, element, errorText, readText, sseParser, withAuth } from "./util.js";

const NOT_CHAT = /embed|rerank|whisper|tts|speech|transcri|diffusion|flux|\bsd\b|image/i;

const conversation = [];
let controller = null;
let generation = 0; // bumped by Clear, so a reply that was cut off is not remembered

/** Can the model chat? Its configured capabilities say; else its name must not say
 *  it is an embedding, reranking, speech or image model. */
export function chatCapable(model) {
  if (model.capabilities?.reranker) return false;
  const modalities = model.modalities;
  if (modalities && (modalities.in.length || modalities.out.length)) {
    const textIn = !modalities.in.length || modalities.in.includes("text");
    const textOut = !modalities.out.length || modalities.out.includes("text");
    return textIn && textOut;
  }
  return !NOT_CHAT.test(`${model.id} ${model.name ?? ""}`);
}

let choiceKey = null;
/** Keep the model select in step with the list; the first time, pick a chat model
 *  (a ready one if any), and keep the user's choice afterwards. */
export function updateChoices(models) {
  const key = JSON.stringify(models.map((m) => [m.id, chatCapable(m)]));
  if (key === choiceKey) return; // rebuilding would close a select the user has open
  const first = choiceKey === null;
  choiceKey = key;
  const select = $("chat-model");
  const chosen = select.value;
  select.replaceChildren(
    ...models.map((m) =>
      element("option", { value: m.id, text: chatCapable(m) ? m.id : `${m.id} (not chat)` }),
    ),
  );
  if (!first && models.some((m) => m.id === chosen)) {
    select.value = chosen;
    return;
  }
  const chat = models.filter(chatCapable);
  const pick = chat.find((m) => m.state === "ready") ?? chat[0] ?? models[0];
  if (pick) select.value = pick.id;
}

function render(target) {
  target.pending = false;
  const html = marked.parse(target.text, { async: false, gfm: true, breaks: true });
  // no images or styles from a model's answer: nothing it writes may load or restyle anything
  target.content.innerHTML = DOMPurify.sanitize(html, { FORBID_TAGS: ["img", "style", "form"], FORBID_ATTR: ["style"] });
}

/** Render at most once per frame while an answer streams in. */
function scheduleRender(target) {
  if (target.pending) return;
  target.pending = true;
  requestAnimationFrame(() => render(target));
}

function addMessage(role, text) {
  const content = element("div", { class: "content", "data-testid": `chat-${role}` });
  const reasoning = element("div", { class: "reasoning", "data-testid": "chat-reasoning" });
  const note = element("div", { class: "note", "data-testid": "chat-note" });
  const message = element(
    "div",
    { class: `message ${role}` },
    element("span", { class: "who", text: role }),
    reasoning,
    content,
    note,
  );
  if (role === "user") content.textContent = text; // what the user typed, verbatim
  const transcript = $("chat-output");
  transcript.append(message);
  transcript.scrollTop = transcript.scrollHeight;
  return { message, content, reasoning, note, text, pending: false };
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
  if (delta.content) {
    target.text += delta.content;
    scheduleRender(target);
  }
  const transcript = $("chat-output");
  transcript.scrollTop = transcript.scrollHeight;
  return delta.content ?? "";
}

function number(testid) {
  const raw = $(testid).value.trim();
  return raw === "" ? undefined : Number(raw);
}

/** The request body: the conversation after the system prompt, and the settings set. */
function requestBody(model) {
  const system = $("chat-system").value.trim();
  const messages = system ? [{ role: "system", content: system }, ...conversation] : [...conversation];
  const body = { model, messages, stream: true };
  const settings = { temperature: number("chat-temperature"), top_p: number("chat-top-p"), max_tokens: number("chat-max-tokens") };
  for (const [name, value] of Object.entries(settings)) {
    if (value !== undefined && Number.isFinite(value)) body[name] = value;
  }
  return body;
}

async function send(event) {
  event.preventDefault();
  const input = $("chat-input");
  const model = $("chat-model").value;
  const text = input.value.trim();
  if (!text || !model || controller) return;
  input.value = "";
  conversation.push({ role: "user", content: text });
  addMessage("user", text);
  const target = addMessage("assistant", "");
  target.text = "";
  target.message.setAttribute("aria-busy", "true");
  const mine = (controller = new AbortController());
  const round = generation;
  $("chat-send").disabled = true;
  $("chat-stop").disabled = false;
  let answer = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      credentials: credentials(),
      headers: withAuth({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(requestBody(model)),
      signal: mine.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    if ((response.headers.get("Content-Type") || "").includes("text/event-stream")) {
      await readText(response, sseParser((frame) => (answer += applyChunk(frame.data, target))));
    } else {
      const body = await response.json(); // an upstream that ignores stream:true
      answer = body.choices?.[0]?.message?.content ?? "";
      target.text = answer;
    }
  } catch (error) {
    if (mine.signal.aborted) {
      target.message.classList.add("stopped");
      target.message.dataset.stopped = "true";
      target.note.textContent = "stopped";
    } else {
      target.message.classList.add("error");
      target.note.textContent = `error: ${error.message}`;
    }
  } finally {
    render(target);
    if (answer && round === generation) conversation.push({ role: "assistant", content: answer });
    target.message.setAttribute("aria-busy", "false");
    target.message.dataset.done = "true";
    controller = null;
    $("chat-send").disabled = false;
    $("chat-stop").disabled = true;
  }
}

function clear() {
  generation += 1;
  controller?.abort();
  conversation.length = 0;
  $("chat-output").replaceChildren();
}

export function setupPlayground() {
  $("chat-form").addEventListener("submit", send);
  $("chat-stop").addEventListener("click", () => controller?.abort());
  $("chat-clear").addEventListener("click", clear);
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("chat-form").requestSubmit();
  });
}
