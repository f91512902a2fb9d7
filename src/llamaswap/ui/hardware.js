// The hardware panel: what the machine is (/api/hardware, once) and how busy it is
// (/api/performance, polled with ?after= while the page is visible).

import { $, element, formatBytes, getJSON, credentials, withAuth } from "./util.js";

const POLL_MS = 5000;
let latest = null; // the newest sample's timestamp

function describe(snapshot) {
  const cpu = snapshot.cpu ?? {};
  const parts = [
    cpu.model ?? "CPU",
    cpu.logical_thread_count ? `${cpu.logical_thread_count} threads` : null,
    `${formatBytes(snapshot.memory?.capacity_bytes)} memory`,
    snapshot.operating_system?.name,
  ].filter(Boolean);
  $("hardware-summary").textContent = parts.join(" · ");
  const gpus = (snapshot.accelerators ?? []).map((gpu) =>
    [gpu.vendor, gpu.model, gpu.memory?.capacity_bytes ? formatBytes(gpu.memory.capacity_bytes) : null].filter(Boolean).join(" "),
  );
  $("hardware-gpus").textContent = gpus.length ? `GPUs: ${gpus.join("; ")}` : "No GPU found (NVML or rocm-smi)";
}

// The config's resources: capacity, what the probe last found free, and each model's
// need as declared and as measured (the scheduler uses the larger).
function showResources(resources) {
  const box = $("hardware-resources");
  if (!resources || !Object.keys(resources).length) {
    box.replaceChildren();
    return;
  }
  const amount = (value) => (value === undefined ? "–" : String(Math.round(value * 100) / 100));
  const tables = Object.entries(resources).map(([name, resource]) => {
    const caption = [`${name}: capacity ${amount(resource.capacity)}`];
    if (resource.probe) caption.push(`free ${amount(resource.free)} (probe: ${resource.probe})`);
    const rows = Object.entries(resource.models).map(([model, need]) =>
      element(
        "tr",
        { "data-testid": `resource-${name}-${model}` },
        element("td", { text: model }),
        element("td", { text: amount(need.declared) }),
        element("td", { text: amount(need.learned) }),
        element("td", { text: amount(need.need) }),
      ),
    );
    return element(
      "table",
      { class: "resources", "data-testid": `resource-${name}` },
      element("caption", { text: caption.join(" · ") }),
      element(
        "thead",
        {},
        element(
          "tr",
          {},
          ...["model", "declared", "measured", "used for decisions"].map((h) => element("th", { text: h })),
        ),
      ),
      element("tbody", {}, ...rows),
    );
  });
  box.replaceChildren(...tables);
}

async function refreshResources() {
  showResources((await getJSON("/api/hardware")).resources);
}

function gauge(label, value, detail, testid) {
  const percent = Math.max(0, Math.min(100, value));
  return element(
    "div",
    { class: "gauge", "data-testid": testid },
    element("span", { class: "gauge-label", text: label }),
    element("meter", { min: "0", max: "100", value: String(percent), "aria-label": label }),
    element("span", { class: "gauge-value", text: detail }),
  );
}

function show(sys, gpus) {
  const gauges = [];
  if (sys) {
    const cores = sys.cpu_util_per_core ?? [];
    const cpu = cores.length ? cores.reduce((a, b) => a + b, 0) / cores.length : 0;
    gauges.push(gauge("CPU", cpu, `${cpu.toFixed(0)} % of ${cores.length} cores`, "gauge-cpu"));
    const used = sys.mem_used_mb ?? 0;
    const total = sys.mem_total_mb || 1;
    gauges.push(gauge("Memory", (used / total) * 100, `${formatBytes(used * 1048576)} of ${formatBytes(total * 1048576)}`, "gauge-memory"));
  }
  for (const gpu of gpus) {
    gauges.push(gauge(`GPU ${gpu.id}`, gpu.gpu_util_pct, `${gpu.gpu_util_pct.toFixed(0)} %, ${gpu.temp_c} °C`, "gauge-gpu"));
    gauges.push(gauge(`VRAM ${gpu.id}`, gpu.mem_util_pct, `${formatBytes(gpu.mem_used_mb * 1048576)} of ${formatBytes(gpu.mem_total_mb * 1048576)}`, "gauge-vram"));
  }
  if (gauges.length) $("hardware-gauges").replaceChildren(...gauges);
}

async function poll() {
  if (document.hidden) return;
  const query = latest ? `?${new URLSearchParams({ after: latest })}` : "";
  const response = await fetch(`/api/performance${query}`, { credentials: credentials(), headers: withAuth(), cache: "no-store" });
  if (response.status === 503) {
    $("hardware-gauges").textContent = "Performance monitoring is disabled (performance.disabled).";
    return;
  }
  if (!response.ok) return;
  const body = await response.json();
  const sys = body.sys_stats.at(-1);
  if (!sys) return;
  latest = sys.timestamp;
  const newest = new Map();
  for (const gpu of body.gpu_stats) newest.set(gpu.id, gpu);
  show(sys, [...newest.values()]);
}

export async function setupHardware() {
  try {
    const snapshot = await getJSON("/api/hardware");
    describe(snapshot);
    showResources(snapshot.resources);
  } catch (error) {
    $("hardware-summary").textContent = `Hardware unknown (${error.message})`;
  }
  await poll().catch(() => {});
  setInterval(() => {
    poll().catch(() => {});
    if (!document.hidden) refreshResources().catch(() => {});
  }, POLL_MS);
}
