"""What the studio tests share: small real study folders, a live server on 127.0.0.1."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

from PIL import Image, ImageDraw

ADMIN = "test-admin-token-0123456789"


def make_images(folder: Path, n: int, tint: tuple[int, int, int], suffix: str = ".png") -> Path:
    """n small pictures with a shape on them, named 00..n-1 (studies pair images by name)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = Image.new("RGB", (96, 64), tint)
        ImageDraw.Draw(image).ellipse((10 + 5 * i, 10, 50 + 5 * i, 50), fill=(255 - 20 * i, 200, 40))
        image.save(folder / f"{i:02d}{suffix}")
    return folder


def real_vs_fake_folders(root: Path, n: int = 6) -> tuple[Path, dict[str, Path]]:
    real = make_images(root / "real", n, (90, 140, 200))
    return real, {"cyclegan": make_images(root / "cyclegan", n, (120, 90, 60)),
                  "cut": make_images(root / "cut", n, (60, 160, 90), ".jpg")}


def trials_of(data: Path, token: str) -> list[dict]:
    from transfigure.studio import db

    with db.opened(data) as conn:
        rows = conn.execute("SELECT t.* FROM trials t JOIN participants p ON p.id = t.participant_id "
                            "WHERE p.token = ? ORDER BY t.position", (token,)).fetchall()
    return [{**dict(r), "options": json.loads(r["options"])} for r in rows]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app):
    """The app under uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the studio did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
