"""A matrix config past llama-swap's old 10,000-combination expansion limit."""

from __future__ import annotations

# A desk of 14 independent slots, one model from each at a time: 3 * 2**13 = 24,576
# combinations, past llama-swap's old 10,000 expansion limit. Every model needs 1 GB
# but chat-30b (30) and vision-xl (20): together 50 on 48, the one capacity problem.
HELPERS = ("embed", "rerank", "tts", "stt", "ocr", "image", "code", "translate", "summarize")
HELPERS += ("guard", "audio", "search")
BIG_SLOTS = {
    "chat": ["chat-7b", "chat-14b", "chat-30b"],
    **{slot: [f"{slot}-a", f"{slot}-b"] for slot in HELPERS},
    "vision": ["vision-s", "vision-xl"],
}
BIG_NEEDS = {"chat-7b": 8, "chat-14b": 16, "chat-30b": 30, "vision-xl": 20}


def big_matrix() -> str:
    """The desk above, plus `big70` that runs alone and `lonely` that is in no set."""
    models = [m for slot in BIG_SLOTS.values() for m in slot] + ["big70", "lonely"]
    needs = BIG_NEEDS | {"big70": 40}
    lines = ["resources: {vram: 48}", "models:"]
    for model in models:
        need = needs.get(model, 1)
        lines.append(f'  {model}: {{cmd: "srv --port ${{PORT}}", resources: {{vram: {need}}}}}')
    desk = " & ".join("(" + " | ".join(slot) + ")" for slot in BIG_SLOTS.values())
    lines += [
        "routing:",
        "  router:",
        "    use: matrix",
        "    settings:",
        "      matrix:",
        "        vars: {c30: chat-30b}",
        "        evict_costs: {c30: 5, chat-14b: 3}",
        "        sets:",
        f'          desk: "{desk}"',
        '          heavy: "big70"',
    ]
    return "\n".join(lines) + "\n"
