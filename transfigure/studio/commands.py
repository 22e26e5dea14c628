"""`transfigure studio` (the web app) and `transfigure study ...` (studies from the command line)."""
from __future__ import annotations

import os
from pathlib import Path

from ..config import add_common_arguments, int_at_least, positive_float
from ..errors import SetupError, UsageError

DEFAULT_DATA = "studio_data"
INSTALL_HINT = "pip install 'transfigure[studio]' (FastAPI, uvicorn, python-multipart)"


def _data_argument(p) -> None:
    p.add_argument("--data", default=DEFAULT_DATA,
                   help=f"the studio's folder: its database (studio.sqlite3), study images and uploads "
                        f"(default: {DEFAULT_DATA})")


def add_commands(sub) -> None:
    s = sub.add_parser(
        "studio", help="web app: try models on uploads, run human perceptual studies",
        description="Start the studio on http://HOST:PORT: a page to try a model on an uploaded photo, participant "
                    "pages for studies (`transfigure study create`), and admin pages with the results. The admin "
                    "token is printed at start (or set with --admin_token / $TRANSFIGURE_STUDIO_TOKEN); participants "
                    "only ever see their own trials. Everything is kept in --data; a restart loses nothing.")
    _data_argument(s)
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for your network)")
    s.add_argument("--port", type=int_at_least(1), default=8000)
    s.add_argument("--admin_token", default=None,
                   help="the admin token (default: $TRANSFIGURE_STUDIO_TOKEN, else a new random one)")
    s.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH",
                   help="local weights for a published model (offline), e.g. hayao=weights/hayao; repeatable")
    s.add_argument("--models", default=None, metavar="A,B",
                   help="only offer these models on the try page (default: every published model and local run)")
    s.add_argument("--max_upload_mb", type=positive_float, default=20.0, help="largest upload accepted")
    s.add_argument("--max_pixels", type=int_at_least(1), default=40_000_000, help="largest upload accepted, in pixels")
    s.add_argument("--keep_hours", type=positive_float, default=24.0,
                   help="uploads and their results are deleted after this many hours")
    s.add_argument("--max_size", type=int_at_least(0), default=1600,
                   help="uploads are translated with their long side at most this (0 = as uploaded)")
    s.add_argument("--tile", type=int_at_least(0), default=0, help="translate in tiles of this size (less memory)")
    add_common_arguments(s, device=True, checkpoints_dir=True)  # the runs are offered on the try page
    s.set_defaults(func=_cmd_studio)

    p = sub.add_parser("study", help="create human perceptual studies, hand out links, read results",
                       description="Studies run in the studio (`transfigure studio`): create one, make participant "
                                   "links, share them, then read the results here or on the admin page.")
    study_sub = p.add_subparsers(dest="study_command", required=True, metavar="COMMAND")
    c = study_sub.add_parser(
        "create", help="a new study from folders of images",
        description="real_vs_fake (the CycleGAN paper's test): --real DIR and --fake NAME=DIR per method; a pair "
                    "is a real photo and a fake of the same file name, shown for --show_ms, then the participant "
                    "picks the real one. closest_style (the CartoonGAN survey): --reference DIR of the target "
                    "style and --candidates NAME=DIR per method, matched by file name; the participant picks the "
                    "candidate closest to the reference's style. Images are copied into --data.")
    _data_argument(c)
    c.add_argument("--kind", required=True, choices=["real_vs_fake", "closest_style"])
    c.add_argument("--name", required=True, help="shown on the admin page")
    c.add_argument("--real", help="real photos (real_vs_fake)")
    c.add_argument("--fake", action="append", default=[], metavar="NAME=DIR", help="one method's outputs; repeatable")
    c.add_argument("--reference", help="images of the target style (closest_style)")
    c.add_argument("--candidates", nargs="+", default=[], metavar="NAME=DIR", help="each method's outputs")
    c.add_argument("--questions", type=int_at_least(1), default=20, help="test trials per participant")
    c.add_argument("--practice", type=int_at_least(0), default=2, help="practice trials first, with feedback, not counted")
    c.add_argument("--attention", type=int_at_least(0), default=2,
                   help="attention checks (an obvious answer) among the test trials; a failed one excludes the "
                        "participant")
    c.add_argument("--show_ms", type=int_at_least(0), default=1000,
                   help="real_vs_fake: how long each pair is shown, in ms (the paper: 1000); 0 = until answered")
    c.add_argument("--links", type=int_at_least(0), default=0, help="also create this many participant links")
    c.add_argument("--base_url", default="http://127.0.0.1:8000", help="where participants reach the studio")
    c.set_defaults(func=_cmd_create)
    k = study_sub.add_parser("links", help="create participant links (each counts once)")
    _data_argument(k)
    k.add_argument("study", type=int, help="the study's id")
    k.add_argument("--count", type=int_at_least(1), default=10)
    k.add_argument("--base_url", default="http://127.0.0.1:8000", help="where participants reach the studio")
    k.set_defaults(func=_cmd_links)
    r = study_sub.add_parser("results", help="a study's results with 95%% confidence intervals")
    _data_argument(r)
    r.add_argument("study", type=int, help="the study's id")
    r.add_argument("--format", default="md", choices=["md", "csv", "json"])
    r.add_argument("--out", default=None, help="write to this file instead of printing")
    r.set_defaults(func=_cmd_results)
    ls = study_sub.add_parser("list", help="the studies, with their links and answers")
    _data_argument(ls)
    ls.set_defaults(func=_cmd_list)
    b = study_sub.add_parser("backup", help="a consistent copy of the database, also while the studio runs")
    _data_argument(b)
    b.add_argument("--out", required=True, help="the copy's file name")
    b.set_defaults(func=_cmd_backup)


def _existing_data(data: str) -> Path:
    from . import db

    if not db.database_path(data).is_file():
        raise UsageError(f"--data {data}: no studio database here (create a study with `transfigure study create`)")
    return Path(data)


def _print_links(tokens: list[str], base_url: str) -> None:
    for token in tokens:
        print(f"{base_url.rstrip('/')}/s/{token}")


def _cmd_create(args) -> int:
    from .studies import StudySettings, create_links, create_study, parse_named_folders

    settings = StudySettings(questions=args.questions, practice=args.practice, attention=args.attention,
                             show_ms=args.show_ms)
    if args.kind == "real_vs_fake":
        if args.reference or args.candidates:
            raise UsageError("--reference and --candidates are for --kind closest_style")
        study_id = create_study(args.data, args.kind, args.name, settings, real=args.real,
                                fakes=parse_named_folders(args.fake, "--fake"))
    else:
        if args.real or args.fake:
            raise UsageError("--real and --fake are for --kind real_vs_fake")
        study_id = create_study(args.data, args.kind, args.name, settings, reference=args.reference,
                                candidates=parse_named_folders(args.candidates, "--candidates"))
    print(f"Created study {study_id} ({args.kind}) in {args.data}")
    if args.links:
        _print_links(create_links(args.data, study_id, args.links), args.base_url)
    else:
        print(f"Make participant links with: transfigure study links {study_id} --data {args.data} --count N")
    return 0


def _cmd_links(args) -> int:
    from .studies import create_links

    _print_links(create_links(_existing_data(args.data), args.study, args.count), args.base_url)
    return 0


def _cmd_results(args) -> int:
    from . import stats
    from .studies import study_results

    study, results = study_results(_existing_data(args.data), args.study)
    text = {"md": stats.to_markdown, "csv": stats.to_csv, "json": stats.to_json}[args.format](results)
    if args.format == "md":
        text = f"# {study['name']} ({study['kind']})\n\n{text}"
    if args.out:
        from ..checkpoint import atomic_write_text

        atomic_write_text(text, Path(args.out))
        print(f"Wrote {args.out}")
    else:
        print(text)
    return 0


def _cmd_list(args) -> int:
    from . import db
    from .studies import list_studies

    with db.opened(_existing_data(args.data)) as conn:
        rows = list_studies(conn)
    print(f"{'id':>4}  {'kind':<14} {'links':>5} {'finished':>8} {'answers':>7}  name")
    for r in rows:
        print(f"{r['id']:>4}  {r['kind']:<14} {r['links']:>5} {r['finished']:>8} {r['answers']:>7}  {r['name']}")
    return 0


def _cmd_backup(args) -> int:
    from . import db

    print(f"Wrote {db.backup(_existing_data(args.data), args.out)}")
    return 0


def _cmd_studio(args) -> int:
    try:
        import uvicorn

        from .app import StudioConfig, create_app
    except ImportError as e:
        raise SetupError(f"the studio needs {e.name}: {INSTALL_HINT}") from None
    weights = {}
    for value in args.weights:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--weights {value!r}: expected MODEL=PATH, e.g. --weights hayao=weights/hayao")
        if not Path(path).exists():
            raise FileNotFoundError(f"--weights {value}: {path} does not exist")
        weights[name] = path
    token = args.admin_token or os.environ.get("TRANSFIGURE_STUDIO_TOKEN")
    config = StudioConfig(data=Path(args.data), checkpoints_dir=Path(args.checkpoints_dir), weights=weights,
                          max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels, keep_hours=args.keep_hours,
                          max_size=args.max_size, tile=args.tile, device=args.device,
                          models=args.models.split(",") if args.models else None,
                          **({"admin_token": token} if token else {}))
    app = create_app(config)
    url = f"http://{args.host}:{args.port}"
    print(f"transfigure studio on {url}  (data: {config.data})\n"
          f"  try a model:  {url}/\n"
          f"  admin:        {url}/admin/login?token={config.admin_token}\n"
          "Stop with Ctrl-C.", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
