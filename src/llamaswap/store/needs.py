"""What each model was measured to use (measured capacity), kept across restarts.

One row per model and resource in the store's database, beside `activity`. A row
remembers its model's command fingerprint (config/fingerprint.py): a changed command
(another GGUF, another context size) may need another amount, so its old figure is not
recalled. Synchronous
on purpose: called in the store's worker thread, like the rest of the database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from llamaswap.config import Config
from llamaswap.config.fingerprint import command_fingerprint

SCHEMA = """
CREATE TABLE IF NOT EXISTS llamaswap_learned_needs (
    model_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    amount REAL NOT NULL,
    cmd_fingerprint TEXT NOT NULL,
    ts_measured INTEGER NOT NULL,
    PRIMARY KEY (model_id, resource)
);
"""

Needs = dict[str, dict[str, float]]  # model -> resource -> amount


def create(db: sqlite3.Connection) -> None:
    with db:
        db.executescript(SCHEMA)


def save(
    db: sqlite3.Connection, model: str, fingerprint: str, amounts: Mapping[str, float], now: float
) -> None:
    """Replace what `model` was measured to use with `amounts`."""
    with db:
        db.execute("DELETE FROM llamaswap_learned_needs WHERE model_id = ?", (model,))
        db.executemany(
            "INSERT INTO llamaswap_learned_needs VALUES (?, ?, ?, ?, ?)",
            [(model, name, amount, fingerprint, int(now)) for name, amount in amounts.items()],
        )


def load(db: sqlite3.Connection, config: Config) -> Needs:
    """The kept needs of the models `config` has, with the same `cmd` as when measured."""
    current = {m: command_fingerprint(x.cmd, x.proxy) for m, x in config.models.items()}
    needs: Needs = {}
    rows = db.execute(
        "SELECT model_id, resource, amount, cmd_fingerprint FROM llamaswap_learned_needs"
    )
    for model, resource, amount, kept in rows:
        if current.get(model) == kept and resource in config.resources:
            needs.setdefault(model, {})[resource] = float(amount)
    return needs
