"""The studio's state: one SQLite database (WAL mode) under the --data folder.

Every request opens its own connection (SQLite connections are not shared
across threads), every write is one transaction, and an answer's uniqueness is
the database's job (trial_id is the answers table's primary key), so 50
participants answering at once can neither lose nor double an answer. WAL lets
readers run while a writer commits; `backup` copies the database consistently
while the server runs (a plain file copy could miss the write-ahead log)."""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

DATABASE = "studio.sqlite3"
_ready: set[Path] = set()

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('real_vs_fake', 'closest_style')),
    settings TEXT NOT NULL,              -- JSON: questions, practice, attention, show_ms, methods
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies(id),
    role TEXT NOT NULL,                  -- real | fake | reference | candidate | attention
    method TEXT,                         -- the method whose output it is (fake, candidate)
    item TEXT NOT NULL,                  -- what pairs images across folders: the file's stem
    file TEXT NOT NULL                   -- relative to the study's folder; never from a request
);
CREATE TABLE IF NOT EXISTS participants (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies(id),
    token TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    participant_id INTEGER NOT NULL REFERENCES participants(id),
    position INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('practice', 'attention', 'test')),
    question TEXT NOT NULL,
    reference_image INTEGER REFERENCES images(id),
    options TEXT NOT NULL,               -- JSON list, in the order shown: [{"image", "method", "role"}, ...]
    correct INTEGER,                     -- the option that is right (practice, attention), else NULL
    UNIQUE (participant_id, position)
);
CREATE TABLE IF NOT EXISTS answers (
    trial_id INTEGER PRIMARY KEY REFERENCES trials(id),
    choice INTEGER NOT NULL,
    response_ms INTEGER,
    answered REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    status TEXT NOT NULL,                -- queued | running | done | error
    message TEXT NOT NULL DEFAULT '',
    original_name TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trials_by_participant ON trials(participant_id, position);
"""


def database_path(data: str | Path) -> Path:
    return Path(data) / DATABASE


def connect(data: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit, see `transaction`),
    with rows addressable by column name; the database is made on first use."""
    path = database_path(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at checkpoints, never corrupt
    conn.execute("PRAGMA foreign_keys=ON")
    key = path.resolve()
    if key not in _ready:  # once per process: WAL mode is a property of the file
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        _ready.add(key)
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection):
    """BEGIN IMMEDIATE: take the write lock up front, so concurrent writers queue
    (busy timeout) instead of failing half-way with 'database is locked'."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def opened(data: str | Path):
    conn = connect(data)
    try:
        yield conn
    finally:
        conn.close()


def backup(data: str | Path, out: str | Path) -> Path:
    """A consistent copy of the database while the server may be writing to it."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"--out {out}: already exists; choose a new file name")
    with opened(data) as conn:
        target = sqlite3.connect(out)
        try:
            conn.backup(target)
        finally:
            target.close()
    return out
