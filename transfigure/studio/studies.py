"""Human perceptual studies: creating them from folders, handing out participant links,
planning each participant's trials, recording answers, and turning answers into
the records that `stats.summarize` measures.

Two kinds, after the papers:
- real_vs_fake (the CycleGAN paper's AMT study): a real photo and one method's
  translation side by side, shown for a fixed time (`show_ms`; 0 = until
  answered); the participant picks the real one. A method's score is how often
  its fake was picked (the fooled rate).
- closest_style (the improved-CartoonGAN survey): a reference image of the
  target style and one candidate per method, in random order; the participant
  picks the candidate closest to the reference's style (each method's choice share).

Each participant gets practice trials (with feedback, not counted), attention
checks (an obvious answer: a visibly broken "fake", or the reference itself among
the candidates; failing one excludes the participant) and test trials, in an
order and with sides drawn for that participant and stored with each trial."""
from __future__ import annotations

import json
import random
import secrets
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageFilter, ImageOps

from ..data.images import list_images, load_image
from ..errors import UsageError
from . import db
from .stats import Record, StudyResults, summarize

KINDS = ("real_vs_fake", "closest_style")
PROMPTS = {"real_vs_fake": "Which photo is real?",
           "closest_style": "Which image is closest to the style of the reference?"}


@dataclass(frozen=True)
class StudySettings:
    questions: int = 20      # test trials per participant (at most the pairs available)
    practice: int = 2        # practice trials, with feedback, not counted
    attention: int = 2       # attention checks among the test trials
    show_ms: int = 1000      # real_vs_fake: how long the pair is shown; 0 = until answered
    max_attention_failures: int = 0  # more failed checks than this excludes a participant

    def check(self) -> None:
        for name in ("questions", "practice", "attention", "show_ms", "max_attention_failures"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name} {getattr(self, name)}: must be 0 or more")
        if self.questions < 1:
            raise UsageError(f"--questions {self.questions}: must be at least 1")


def parse_named_folders(values: list[str], option: str) -> dict[str, Path]:
    """NAME=DIR arguments (one per method) -> {name: folder}."""
    folders: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        name = name.strip()
        if not sep or not name or not folder:
            raise UsageError(f"{option} {value!r}: expected NAME=DIR, e.g. {option} cyclegan=results/fakes")
        if name in folders:
            raise UsageError(f"{option}: the name {name!r} is given twice")
        folders[name] = Path(folder)
    if not folders:
        raise UsageError(f"{option} NAME=DIR is needed at least once")
    return folders


def _by_stem(folder: Path, option: str) -> dict[str, Path]:
    images = list_images(folder, expected=f"the images for {option}")
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise UsageError(f"{option} {folder}: {stems[path.stem].name} and {path.name} share the name "
                             f"{path.stem!r}; images are paired by name, so rename one")
        stems[path.stem] = path
    return stems


def _study_folder(data: Path, study_id: int) -> Path:
    return Path(data) / "studies" / str(study_id)


def _attention_image(source: Path, target: Path) -> None:
    """An unmistakable fake: the photo upside down, colours inverted and blurred."""
    image = load_image(source, 3)
    ImageOps.invert(image.rotate(180)).filter(ImageFilter.GaussianBlur(3)).save(target)


def create_study(data: str | Path, kind: str, name: str, settings: StudySettings, *,
                 real: str | Path | None = None, fakes: dict[str, Path] | None = None,
                 reference: str | Path | None = None, candidates: dict[str, Path] | None = None) -> int:
    """Copy the study's images into the data folder (the study then needs nothing
    outside it) and record them; returns the study's id."""
    if kind not in KINDS:
        raise UsageError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    settings.check()
    if not name.strip():
        raise UsageError("--name: give the study a name")
    entries: list[tuple[str, str | None, str, Path]] = []  # (role, method, item, source file)
    if kind == "real_vs_fake":
        if real is None or not fakes:
            raise UsageError("--kind real_vs_fake needs --real DIR and --fake NAME=DIR (one per method)")
        reals = _by_stem(Path(real), "--real")
        for method, folder in fakes.items():
            fake_images = _by_stem(folder, f"--fake {method}=")
            common = sorted(set(reals) & set(fake_images))
            if not common:
                raise UsageError(f"--fake {method}={folder}: no image shares a name with one in --real {real}; "
                                 "pairs are matched by file name (e.g. 0001.png and 0001.jpg)")
            entries += [("fake", method, item, fake_images[item]) for item in common]
        entries += [("real", None, item, path) for item, path in reals.items()]
        methods = list(fakes)
    else:
        if reference is None or not candidates:
            raise UsageError("--kind closest_style needs --reference DIR and --candidates NAME=DIR (two or more)")
        if len(candidates) < 2:
            raise UsageError("--candidates: give at least two methods to choose between")
        refs = list_images(Path(reference), expected="reference images of the target style")
        by_method = {m: _by_stem(folder, f"--candidates {m}=") for m, folder in candidates.items()}
        common = sorted(set.intersection(*(set(v) for v in by_method.values())))
        if not common:
            raise UsageError("--candidates: no image name is found in every candidate folder; each question "
                             "shows the same input as translated by every method, matched by file name")
        entries += [("reference", None, path.stem, path) for path in refs]
        entries += [("candidate", m, item, by_method[m][item]) for m in candidates for item in common]
        methods = list(candidates)
    record = {**asdict(settings), "methods": methods}
    with db.opened(data) as conn:
        with db.transaction(conn):
            study_id = conn.execute("INSERT INTO studies (name, kind, settings, created) VALUES (?, ?, ?, ?)",
                                    (name, kind, json.dumps(record), time.time())).lastrowid
        folder = _study_folder(Path(data), study_id)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            rows = []
            for n, (role, method, item, source) in enumerate(entries):
                file = f"{n:05d}{source.suffix.lower()}"
                shutil.copyfile(source, folder / file)
                rows.append((study_id, role, method, item, file))
            if kind == "real_vs_fake":  # attention "fakes" made from the real photos
                for n, (item, path) in enumerate(sorted(reals.items())):
                    file = f"attention-{n:05d}.png"
                    _attention_image(path, folder / file)
                    rows.append((study_id, "attention", None, item, file))
            with db.transaction(conn):
                conn.executemany("INSERT INTO images (study_id, role, method, item, file) VALUES (?, ?, ?, ?, ?)",
                                 rows)
        except BaseException:
            with db.transaction(conn):
                conn.execute("DELETE FROM images WHERE study_id = ?", (study_id,))
                conn.execute("DELETE FROM studies WHERE id = ?", (study_id,))
            shutil.rmtree(folder, ignore_errors=True)
            raise
    return study_id


def get_study(conn, study_id: int) -> dict:
    row = conn.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
    if row is None:
        raise UsageError(f"no study {study_id}; `transfigure study list` shows them")
    return {**dict(row), "settings": json.loads(row["settings"])}


def list_studies(conn) -> list[dict]:
    rows = conn.execute(
        "SELECT s.*, (SELECT COUNT(*) FROM participants p WHERE p.study_id = s.id) AS links, "
        "(SELECT COUNT(*) FROM participants p WHERE p.study_id = s.id AND p.finished IS NOT NULL) AS finished, "
        "(SELECT COUNT(*) FROM answers a JOIN trials t ON t.id = a.trial_id JOIN participants p "
        " ON p.id = t.participant_id WHERE p.study_id = s.id) AS answers FROM studies s ORDER BY s.id").fetchall()
    return [{**dict(r), "settings": json.loads(r["settings"])} for r in rows]


def _images(conn, study_id: int, role: str) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM images WHERE study_id = ? AND role = ? ORDER BY id",
                        (study_id, role)).fetchall()


def _plan(conn, study: dict, rng: random.Random) -> list[dict]:
    """A participant's trials: practice first, then test trials with the attention
    checks at random places. Sides and candidate order are drawn per trial."""
    settings, study_id = study["settings"], study["id"]
    if study["kind"] == "real_vs_fake":
        real = {r["item"]: r["id"] for r in _images(conn, study_id, "real")}
        attention = {r["item"]: r["id"] for r in _images(conn, study_id, "attention")}
        pairs = [(f["item"], f["method"], f["id"]) for f in _images(conn, study_id, "fake")]

        def trial(kind, item, method, fake_id):
            options = [{"image": real[item], "method": None, "role": "real"},
                       {"image": fake_id, "method": method, "role": "fake" if method else "attention"}]
            rng.shuffle(options)
            correct = next(i for i, o in enumerate(options) if o["role"] == "real")
            return {"kind": kind, "question": f"{method}:{item}" if method else f"attention:{item}",
                    "reference_image": None, "options": options, "correct": correct}

        by_method: dict[str, list] = {}
        for pair in pairs:
            by_method.setdefault(pair[1], []).append(pair)
        for group in by_method.values():
            rng.shuffle(group)
        # Round-robin over the methods: each gets an equal share of a participant's questions.
        dealt = [group[i] for i in range(max(map(len, by_method.values()))) for group in by_method.values()
                 if i < len(group)]
        chosen = dealt[:settings["questions"]]
        rng.shuffle(chosen)
        tests = [trial("test", *p) for p in chosen]
        practice_pool = dealt[settings["questions"]:] or dealt
        practice = [trial("practice", *practice_pool[i % len(practice_pool)]) for i in range(settings["practice"])]
        items = sorted(attention)
        checks = [trial("attention", item, None, attention[item])
                  for item in rng.sample(items, min(settings["attention"], len(items)))]
    else:
        references = [r["id"] for r in _images(conn, study_id, "reference")]
        candidates: dict[str, list] = {}
        for c in _images(conn, study_id, "candidate"):
            candidates.setdefault(c["item"], []).append({"image": c["id"], "method": c["method"], "role": "candidate"})
        items = sorted(candidates)

        def trial(kind, item, attention_check=False):
            reference = rng.choice(references)
            options = [dict(o) for o in candidates[item]]
            if attention_check:  # the reference itself among the candidates: the obvious answer
                options[rng.randrange(len(options))] = {"image": reference, "method": None, "role": "reference"}
            rng.shuffle(options)
            correct = next((i for i, o in enumerate(options) if o["role"] == "reference"), None)
            return {"kind": kind, "question": item, "reference_image": reference, "options": options,
                    "correct": correct}

        order = rng.sample(items, len(items))
        tests = [trial("test", item) for item in order[:settings["questions"]]]
        practice = [trial("practice", order[i % len(order)], attention_check=True)
                    for i in range(settings["practice"])]  # practice shows the task with a clear answer
        checks = [trial("attention", rng.choice(items), attention_check=True) for _ in range(settings["attention"])]
    for check in checks:
        tests.insert(rng.randrange(len(tests) + 1), check)
    return practice + tests


def create_links(data: str | Path, study_id: int, count: int) -> list[str]:
    """`count` new participants, each with an unguessable token and a planned sequence of
    trials; returns the tokens (a link is base_url/s/TOKEN)."""
    if count < 1:
        raise UsageError(f"--count {count}: must be at least 1")
    tokens = []
    with db.opened(data) as conn:
        study = get_study(conn, study_id)
        for _ in range(count):
            token = secrets.token_urlsafe(18)
            trials = _plan(conn, study, random.Random(token))
            with db.transaction(conn):
                pid = conn.execute("INSERT INTO participants (study_id, token, created) VALUES (?, ?, ?)",
                                   (study_id, token, time.time())).lastrowid
                conn.executemany(
                    "INSERT INTO trials (participant_id, position, kind, question, reference_image, options, correct) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(pid, i, t["kind"], t["question"], t["reference_image"], json.dumps(t["options"]), t["correct"])
                     for i, t in enumerate(trials)])
            tokens.append(token)
    return tokens


# ---------------------------------------------------------------- participants

class AnswerRejected(UsageError):
    """An answer the server does not take; `status` is the HTTP status to send."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def participant(conn, token: str):
    """The participant with this token, or None (an unknown token reveals nothing)."""
    if not isinstance(token, str) or not 10 <= len(token) <= 64:
        return None
    return conn.execute("SELECT * FROM participants WHERE token = ?", (token,)).fetchone()


def next_trial(conn, participant_row) -> dict | None:
    """The first unanswered trial (a participant who leaves comes back there), or None when done."""
    row = conn.execute(
        "SELECT t.* FROM trials t LEFT JOIN answers a ON a.trial_id = t.id "
        "WHERE t.participant_id = ? AND a.trial_id IS NULL ORDER BY t.position LIMIT 1",
        (participant_row["id"],)).fetchone()
    if row is None:
        return None
    total = conn.execute("SELECT COUNT(*) FROM trials WHERE participant_id = ?",
                         (participant_row["id"],)).fetchone()[0]
    return {**dict(row), "options": json.loads(row["options"]), "total": total}


def record_answer(conn, participant_row, trial_id, choice, response_ms=None) -> dict:
    """Validate and store one answer: the trial must be this participant's current one,
    the choice one of the options shown, and the trial not answered before."""
    if not isinstance(trial_id, int) or isinstance(trial_id, bool) or not isinstance(choice, int) \
            or isinstance(choice, bool):
        raise AnswerRejected("trial_id and choice must be whole numbers")
    if response_ms is not None and (not isinstance(response_ms, int) or isinstance(response_ms, bool)):
        response_ms = None
    with db.transaction(conn):
        trial = conn.execute("SELECT * FROM trials WHERE id = ? AND participant_id = ?",
                             (trial_id, participant_row["id"])).fetchone()
        if trial is None:
            raise AnswerRejected("no such trial for this link", 404)
        if conn.execute("SELECT 1 FROM answers WHERE trial_id = ?", (trial_id,)).fetchone():
            raise AnswerRejected("this trial is already answered", 409)
        current = next_trial(conn, participant_row)
        if current is None or current["id"] != trial_id:
            raise AnswerRejected("this is not the trial being asked", 409)
        options = json.loads(trial["options"])
        if not 0 <= choice < len(options):
            raise AnswerRejected(f"choice {choice} is not one of the {len(options)} options shown")
        conn.execute("INSERT INTO answers (trial_id, choice, response_ms, answered) VALUES (?, ?, ?, ?)",
                     (trial_id, choice, response_ms, time.time()))
        if next_trial(conn, participant_row) is None:
            conn.execute("UPDATE participants SET finished = ? WHERE id = ?", (time.time(), participant_row["id"]))
    feedback = None
    if trial["kind"] == "practice" and trial["correct"] is not None:
        feedback = choice == trial["correct"]
    return {"ok": True, "practice_correct": feedback}


def trial_image_file(conn, data: Path, participant_row, trial_id: int, slot: str) -> Path | None:
    """The file behind one image of one of this participant's trials: 'reference' or an
    option's index. Ids come from the database, never a path from the request."""
    trial = conn.execute("SELECT * FROM trials WHERE id = ? AND participant_id = ?",
                         (trial_id, participant_row["id"])).fetchone()
    if trial is None:
        return None
    if slot == "reference":
        image_id = trial["reference_image"]
    elif slot.isdigit() and int(slot) < len(options := json.loads(trial["options"])):
        image_id = options[int(slot)]["image"]
    else:
        return None
    image = conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
    if image is None:
        return None
    return _study_folder(data, image["study_id"]) / image["file"]


# ---------------------------------------------------------------- results

def answer_rows(conn, study_id: int) -> list:
    return conn.execute(
        "SELECT p.token, t.kind, t.question, t.options, t.correct, a.choice FROM answers a "
        "JOIN trials t ON t.id = a.trial_id JOIN participants p ON p.id = t.participant_id "
        "WHERE p.study_id = ? ORDER BY p.id, t.position", (study_id,)).fetchall()


def study_results(data: str | Path, study_id: int, resamples: int = 2000) -> tuple[dict, StudyResults]:
    """(the study, its results): test answers as records, participants who failed more
    attention checks than allowed excluded. Participants appear by an anonymous number."""
    with db.opened(data) as conn:
        study = get_study(conn, study_id)
        rows = answer_rows(conn, study_id)
    numbers: dict[str, str] = {}
    failures: dict[str, int] = {}
    records: list[Record] = []
    for row in rows:
        who = numbers.setdefault(row["token"], f"participant {len(numbers) + 1}")
        options = json.loads(row["options"])
        if row["kind"] == "attention":
            failures[who] = failures.get(who, 0) + (row["choice"] != row["correct"])
        elif row["kind"] == "test":
            if study["kind"] == "real_vs_fake":
                fake = next(o for o in options if o["role"] == "fake")
                records.append(Record(who, row["question"], fake["method"], options[row["choice"]]["role"] == "fake"))
            else:
                records += [Record(who, row["question"], o["method"], i == row["choice"])
                            for i, o in enumerate(options)]
    allowed = study["settings"]["max_attention_failures"]
    excluded = sorted((w for w, n in failures.items() if n > allowed), key=lambda w: int(w.split()[-1]))
    return study, summarize(study["kind"], records, excluded, resamples=resamples)
