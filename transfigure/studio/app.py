"""The studio web app: try a model on an upload, take part in a study, read its results.

Server-rendered pages (Jinja2 with autoescaping: whatever a user typed is shown as
text) and a little plain JavaScript. State lives in the SQLite database of
`db.py`; files live under the --data folder and are found through ids stored
there, never through a path taken from a request."""
from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from PIL import Image, UnidentifiedImageError

from ..errors import UsageError
from . import db, stats, studies

TEMPLATES = Path(__file__).parent / "templates"
ADMIN_COOKIE = "transfigure_admin"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class StudioConfig:
    data: Path = Path("studio_data")
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    checkpoints_dir: Path = Path("checkpoints")
    weights: dict[str, str] = field(default_factory=dict)  # published model -> local weights (offline use)
    max_upload_mb: float = 20.0
    max_pixels: int = 40_000_000
    keep_hours: float = 24.0                  # uploads and results are deleted after this
    max_size: int = 1600                      # long side the try page translates at (0 = as uploaded)
    tile: int = 0
    device: str = "auto"
    models: list[str] | None = None           # offered on the try page; None = published + local runs


def available_models(config: StudioConfig) -> list[str]:
    """The names the try page offers; a request may only name one of these."""
    if config.models is not None:
        return list(config.models)
    from ..pretrained import MODELS

    runs = sorted(p.name for p in Path(config.checkpoints_dir).glob("*")
                  if p.is_dir() and (any(p.glob("*.ckpt")) or (p / "options.yaml").is_file()))
    return sorted(MODELS) + [f"run:{name}" for name in runs]


class ModelJobs:
    """Translations of uploads, one at a time (a model uses every core), in a background
    thread; each translator is loaded once and kept."""

    def __init__(self, config: StudioConfig):
        self.config = config
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-model")
        self.translators: dict[str, object] = {}

    def translator(self, model: str):
        if model not in self.translators:
            from ..api import load

            name = model.removeprefix("run:")
            self.translators[model] = load(name, weights=self.config.weights.get(name),
                                           checkpoints_dir=self.config.checkpoints_dir, device=self.config.device,
                                           tile=self.config.tile, max_size=self.config.max_size, progress=False)
        return self.translators[model]

    def submit(self, upload_id: str, model: str) -> None:
        self.pool.submit(self._run, upload_id, model)

    def _run(self, upload_id: str, model: str) -> None:
        folder = upload_folder(self.config, upload_id)
        with db.opened(self.config.data) as conn:
            conn.execute("UPDATE uploads SET status = 'running' WHERE id = ?", (upload_id,))
            try:
                with Image.open(folder / "input.png") as image:
                    result = self.translator(model)(image.convert("RGB"))
                tmp = folder / ".result.png.tmp"
                result.save(tmp, format="PNG")
                tmp.replace(folder / "result.png")
                conn.execute("UPDATE uploads SET status = 'done' WHERE id = ?", (upload_id,))
            except Exception as e:  # noqa: BLE001 - shown to the user, who can try another model
                message = str(e) if isinstance(e, (UsageError, OSError)) else f"{type(e).__name__}: {e}"
                conn.execute("UPDATE uploads SET status = 'error', message = ? WHERE id = ?",
                             (message[:500], upload_id))


def upload_folder(config: StudioConfig, upload_id: str) -> Path:
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise HTTPException(404, "no such upload")
    return Path(config.data) / "uploads" / upload_id


def remove_expired_uploads(config: StudioConfig, now: float | None = None) -> int:
    """Delete uploads and results older than --keep_hours; returns how many."""
    cutoff = (now or time.time()) - config.keep_hours * 3600
    with db.opened(config.data) as conn:
        old = [r["id"] for r in conn.execute("SELECT id FROM uploads WHERE created < ?", (cutoff,))]
        for upload_id in old:
            shutil.rmtree(upload_folder(config, upload_id), ignore_errors=True)
            conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
    return len(old)


def read_upload(raw: bytes, config: StudioConfig, name: str) -> Image.Image:
    """The uploaded bytes as an RGB image, or an HTTP 400/413 with a message a person can act on."""
    if len(raw) > config.max_upload_mb * 2**20:
        raise HTTPException(413, f"{name}: the file is over the {config.max_upload_mb:g} MB limit")
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size
        if width * height > config.max_pixels:
            raise HTTPException(413, f"{name}: {width}x{height} is over the limit of {config.max_pixels:,} pixels; "
                                     "scale it down first")
        image.load()
    except HTTPException:
        raise
    except Image.DecompressionBombError:  # so large that Pillow refuses even to open it
        raise HTTPException(413, f"{name}: over the limit of {config.max_pixels:,} pixels; scale it down first")
    except (UnidentifiedImageError, OSError, ValueError):
        raise HTTPException(400, f"{name}: not an image this studio can read (use PNG, JPEG, WebP, BMP or TIFF)")
    return image.convert("RGB")


def create_app(config: StudioConfig) -> FastAPI:
    config.data = Path(config.data)
    db.connect(config.data).close()  # the schema exists before the first request
    stop_cleaning = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        def clean():  # uploads expire even when nobody uploads
            while True:
                remove_expired_uploads(config)
                if stop_cleaning.wait(600):
                    return

        threading.Thread(target=clean, daemon=True, name="studio-cleanup").start()
        yield
        stop_cleaning.set()

    app = FastAPI(title="transfigure studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    jobs = ModelJobs(config)
    app.state.config, app.state.jobs = config, jobs

    def page(name: str, status: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status)

    def is_admin(request: Request) -> bool:
        given = request.cookies.get(ADMIN_COOKIE, "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        return bool(given) and secrets.compare_digest(given.encode(), config.admin_token.encode())

    def require_admin(request: Request) -> None:
        if not is_admin(request):
            raise HTTPException(403, "admin pages need the admin token printed when the studio started")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return page("error.html", exc.status_code, message=exc.detail)

    @app.exception_handler(UsageError)
    async def usage_error(request: Request, exc: UsageError):
        status = getattr(exc, "status", 400)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return page("error.html", status, message=str(exc))

    @app.middleware("http")
    async def refuse_oversized_uploads(request: Request, call_next):
        """Before the multipart body is read (and spooled to disk): a declared size far over
        the limit is refused at once."""
        declared = request.headers.get("content-length", "")
        if request.url.path == "/api/try" and declared.isdigit() and \
                int(declared) > config.max_upload_mb * 2**20 + 2**16:  # room for the form's own fields
            return JSONResponse({"error": f"the upload is over the {config.max_upload_mb:g} MB limit"}, 413)
        return await call_next(request)

    # ------------------------------------------------------------ try a model
    @app.get("/", response_class=HTMLResponse)
    def try_page():
        return page("try.html", models=available_models(config), max_mb=config.max_upload_mb,
                    keep_hours=config.keep_hours)

    @app.post("/api/try")
    async def try_model(file: UploadFile = File(...), model: str = Form(...)):
        if model not in available_models(config):
            raise HTTPException(400, f"unknown model {model!r}")
        limit = int(config.max_upload_mb * 2**20)
        raw = await file.read(limit + 1)
        name = Path(file.filename or "upload").name[:100]
        image = read_upload(raw, config, name)
        remove_expired_uploads(config)
        upload_id = uuid.uuid4().hex
        folder = upload_folder(config, upload_id)
        folder.mkdir(parents=True)
        image.save(folder / "input.png")
        with db.opened(config.data) as conn:
            conn.execute("INSERT INTO uploads (id, model, status, original_name, created) VALUES (?, ?, 'queued', ?, ?)",
                         (upload_id, model, name, time.time()))
        jobs.submit(upload_id, model)
        return {"id": upload_id, "status": "queued"}

    @app.get("/api/try/{upload_id}")
    def try_status(upload_id: str):
        upload_folder(config, upload_id)  # validates the id's form
        with db.opened(config.data) as conn:
            row = conn.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        if row is None:
            raise HTTPException(404, "no such upload (uploads are deleted after a while)")
        done = row["status"] == "done"
        stem = Path(row["original_name"]).stem or "image"
        return {"id": upload_id, "status": row["status"], "message": row["message"], "model": row["model"],
                "input_url": f"/uploads/{upload_id}/input.png",
                "result_url": f"/uploads/{upload_id}/result.png" if done else None,
                "download_name": f"{stem}_{row['model'].removeprefix('run:')}.png"}

    @app.get("/uploads/{upload_id}/{which}")
    def upload_file(upload_id: str, which: str, download: str | None = None):
        if which not in ("input.png", "result.png"):
            raise HTTPException(404, "no such file")
        path = upload_folder(config, upload_id) / which
        if not path.is_file():
            raise HTTPException(404, "no such file (uploads are deleted after a while)")
        if download:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", download)[:100] or which
            return FileResponse(path, media_type="image/png", filename=safe)
        return FileResponse(path, media_type="image/png")

    # ------------------------------------------------------------ participants
    def participant_or_404(conn, token: str):
        row = studies.participant(conn, token)
        if row is None:
            raise HTTPException(404, "this link is not valid")
        return row

    @app.get("/s/{token}", response_class=HTMLResponse)
    def participant_page(token: str):
        with db.opened(config.data) as conn:
            who = participant_or_404(conn, token)
            study = studies.get_study(conn, who["study_id"])
        return page("participant.html", token=token, kind=study["kind"], prompt=studies.PROMPTS[study["kind"]],
                    show_ms=study["settings"]["show_ms"], finished=who["finished"] is not None)

    @app.get("/api/s/{token}/next")
    def participant_next(token: str):
        with db.opened(config.data) as conn:
            who = participant_or_404(conn, token)
            study = studies.get_study(conn, who["study_id"])
            trial = studies.next_trial(conn, who)
        if trial is None:
            return {"done": True}
        base = f"/api/s/{token}/image/{trial['id']}"
        return {"done": False, "trial_id": trial["id"], "position": trial["position"] + 1, "total": trial["total"],
                "practice": trial["kind"] == "practice", "kind": study["kind"],
                "prompt": studies.PROMPTS[study["kind"]], "show_ms": study["settings"]["show_ms"],
                "reference_url": f"{base}/reference" if trial["reference_image"] else None,
                "option_urls": [f"{base}/{i}" for i in range(len(trial["options"]))]}

    @app.post("/api/s/{token}/answer")
    async def participant_answer(token: str, request: Request):
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise HTTPException(400, "the answer must be JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the answer must be a JSON object")
        with db.opened(config.data) as conn:
            who = participant_or_404(conn, token)
            try:
                return studies.record_answer(conn, who, body.get("trial_id"), body.get("choice"),
                                             body.get("response_ms"))
            except studies.AnswerRejected as e:
                raise HTTPException(e.status, str(e)) from None

    @app.get("/api/s/{token}/image/{trial_id}/{slot}")
    def participant_image(token: str, trial_id: int, slot: str):
        with db.opened(config.data) as conn:
            who = participant_or_404(conn, token)
            path = studies.trial_image_file(conn, config.data, who, trial_id, slot)
        root = (config.data / "studies").resolve()
        if path is None or not path.is_file() or root not in path.resolve().parents:
            raise HTTPException(404, "no such image")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})

    # ------------------------------------------------------------ admin
    @app.get("/admin/login")
    def admin_login(token: str = ""):
        if not token or not secrets.compare_digest(token.encode(), config.admin_token.encode()):
            raise HTTPException(403, "wrong or missing admin token")
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(ADMIN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/admin", response_class=HTMLResponse)
    def admin_home(request: Request):
        require_admin(request)
        with db.opened(config.data) as conn:
            rows = studies.list_studies(conn)
        return page("admin.html", studies=rows, kinds=studies.KINDS, error=None)

    @app.post("/admin/studies")
    def admin_create(request: Request, kind: str = Form(...), name: str = Form(...), real: str = Form(""),
                     fakes: str = Form(""), reference: str = Form(""), candidates: str = Form(""),
                     questions: int = Form(20), practice: int = Form(2), attention: int = Form(2),
                     show_ms: int = Form(1000)):
        require_admin(request)  # the admin names folders on this machine: trusted by the token
        settings = studies.StudySettings(questions=questions, practice=practice, attention=attention, show_ms=show_ms)
        try:
            named = [line.strip() for line in (fakes if kind == "real_vs_fake" else candidates).splitlines()
                     if line.strip()]
            option = "--fake" if kind == "real_vs_fake" else "--candidates"
            folders = studies.parse_named_folders(named, option)
            study_id = studies.create_study(config.data, kind, name, settings, real=real or None, fakes=folders,
                                            reference=reference or None, candidates=folders)
        except (UsageError, OSError) as e:
            with db.opened(config.data) as conn:
                rows = studies.list_studies(conn)
            return page("admin.html", 400, studies=rows, kinds=studies.KINDS, error=str(e))
        return RedirectResponse(f"/admin/studies/{study_id}", status_code=303)

    @app.get("/admin/studies/{study_id}", response_class=HTMLResponse)
    def admin_study(request: Request, study_id: int):
        require_admin(request)
        study, results = studies.study_results(config.data, study_id)
        with db.opened(config.data) as conn:
            links = conn.execute("SELECT token, finished FROM participants WHERE study_id = ? ORDER BY id",
                                 (study_id,)).fetchall()
        base = str(request.base_url).rstrip("/")
        return page("study.html", study=study, results=results, chart=Markup(stats.bar_chart_svg(results)),
                    links=[(f"{base}/s/{r['token']}", r["finished"] is not None) for r in links])

    @app.post("/admin/studies/{study_id}/links")
    def admin_links(request: Request, study_id: int, count: int = Form(...)):
        require_admin(request)
        if not 1 <= count <= 1000:
            raise HTTPException(400, "create between 1 and 1000 links at a time")
        studies.create_links(config.data, study_id, count)
        return RedirectResponse(f"/admin/studies/{study_id}", status_code=303)

    @app.get("/admin/studies/{study_id}/results.{fmt}")
    def admin_results(request: Request, study_id: int, fmt: str):
        require_admin(request)
        writers = {"csv": (stats.to_csv, "text/csv"), "json": (stats.to_json, "application/json"),
                   "md": (stats.to_markdown, "text/markdown")}
        if fmt not in writers:
            raise HTTPException(404, "results come as .csv, .json or .md")
        write, media = writers[fmt]
        _, results = studies.study_results(config.data, study_id)
        return Response(write(results), media_type=media)

    return app
