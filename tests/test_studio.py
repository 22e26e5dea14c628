"""The studio's studies, pages and guards, through its HTTP interface (FastAPI's test
client) and the command line, on small real image folders."""
import io
import json
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from shared_data import PHOTOS, WEIGHTS, needs_weights
from studio_helpers import ADMIN, real_vs_fake_folders, trials_of
from transfigure.cli import main
from transfigure.studio import db, stats
from transfigure.studio.app import StudioConfig, create_app, remove_expired_uploads
from transfigure.studio.studies import StudySettings, create_links, create_study, study_results


@pytest.fixture
def study(tmp_path):
    """A real-vs-fake study of 6 pairs per method, with 3 participant links."""
    data = tmp_path / "data"
    real, fakes = real_vs_fake_folders(tmp_path)
    study_id = create_study(data, "real_vs_fake", "horses <script>alert(1)</script>",
                            StudySettings(questions=5, practice=2, attention=2, show_ms=0), real=real, fakes=fakes)
    return data, study_id, create_links(data, study_id, 3)


@pytest.fixture
def client(study, tmp_path):
    data = study[0]
    return TestClient(create_app(StudioConfig(data=data, admin_token=ADMIN, checkpoints_dir=tmp_path / "none",
                                              models=["hayao"])))


def admin(client):
    client.cookies.set("transfigure_admin", ADMIN)
    return client


def answer_all(client, token, data, choose=lambda trial: 0):
    """Answer every trial the server asks, attention checks by `choose`; returns the answers accepted."""
    accepted = 0
    by_id = {t["id"]: t for t in trials_of(data, token)}
    while not (step := client.get(f"/api/s/{token}/next").json())["done"]:
        r = client.post(f"/api/s/{token}/answer", json={"trial_id": step["trial_id"],
                                                         "choice": choose(by_id[step["trial_id"]])})
        assert r.status_code == 200, r.text
        accepted += 1
    return accepted


def test_each_participant_gets_practice_checks_and_tests_in_their_own_order(study):
    data, _, tokens = study
    plans = [trials_of(data, t) for t in tokens]
    for plan in plans:
        assert Counter(t["kind"] for t in plan) == {"practice": 2, "attention": 2, "test": 5}
        assert [t["kind"] for t in plan[:2]] == ["practice", "practice"]
        for trial in plan:
            real = [i for i, o in enumerate(trial["options"]) if o["role"] == "real"]
            assert len(trial["options"]) == 2 and len(real) == 1
            if trial["kind"] != "test":
                assert trial["correct"] == real[0]
    sides = Counter(next(i for i, o in enumerate(t["options"]) if o["role"] == "real")
                    for plan in plans for t in plan)
    assert sides[0] and sides[1]  # the real photo is not always on the same side
    assert len({tuple(t["question"] for t in plan) for plan in plans}) > 1  # orders differ
    for plan in plans:  # 5 questions over 2 methods: 3 and 2
        shares = Counter(next(o["method"] for o in t["options"] if o["role"] == "fake")
                         for t in plan if t["kind"] == "test")
        assert sorted(shares.values()) == [2, 3]


def test_a_participant_can_stop_and_come_back_and_a_link_counts_once(study, client):
    data, _, tokens = study
    token = tokens[0]
    first = client.get(f"/api/s/{token}/next").json()
    assert client.post(f"/api/s/{token}/answer", json={"trial_id": first["trial_id"], "choice": 1}).status_code == 200
    again = TestClient(client.app).get(f"/api/s/{token}/next").json()  # a new browser, the same link
    assert again["position"] == 2 and again["trial_id"] != first["trial_id"]
    answer_all(client, token, data)
    assert "has been used to complete the study" in client.get(f"/s/{token}").text
    assert client.post(f"/api/s/{token}/answer", json={"trial_id": first["trial_id"], "choice": 0}).status_code == 409


def test_results_exclude_failed_attention_checks_and_match_the_answers(study, client, capsys):
    data, study_id, tokens = study
    right = lambda t: t["correct"] if t["kind"] == "attention" else 0  # noqa: E731 - left option on tests
    answer_all(client, tokens[0], data, right)
    answer_all(client, tokens[1], data, right)
    answer_all(client, tokens[2], data, lambda t: 1 - t["correct"] if t["kind"] == "attention" else 0)
    _, results = study_results(data, study_id)
    assert results.participants == 2 and results.excluded == ["participant 3"]
    fooled, shown = Counter(), Counter()  # the tally by hand from the stored trials
    for token in tokens[:2]:
        for t in trials_of(data, token):
            if t["kind"] == "test":
                fake = next(o for o in t["options"] if o["role"] == "fake")
                shown[fake["method"]] += 1
                fooled[fake["method"]] += t["options"][0]["role"] == "fake"  # option 0 was picked
    for method, p in results.methods.items():
        assert (p.successes, p.n) == (fooled[method], shown[method])
        assert p.wilson == pytest.approx(stats.wilson_interval(p.successes, p.n))
    assert main(["study", "results", str(study_id), "--data", str(data), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(stats.to_json(results)) == printed
    page = admin(client).get(f"/admin/studies/{study_id}").text
    for method, p in results.methods.items():
        assert f"{100 * p.wilson[0]:.1f}% – {100 * p.wilson[1]:.1f}%" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page  # shown as text


def test_admin_pages_and_results_need_the_admin_token(study, client):
    _, study_id, tokens = study
    for path in ("/admin", f"/admin/studies/{study_id}", f"/admin/studies/{study_id}/results.csv",
                 f"/admin/studies/{study_id}/results.json"):
        assert client.get(path).status_code == 403
        assert client.get(path, headers={"Authorization": f"Bearer {tokens[0]}"}).status_code == 403  # a participant
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.get(path, headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    assert client.post(f"/admin/studies/{study_id}/links", data={"count": "2"}).status_code == 403
    assert client.get(f"/admin/login?token={tokens[0]}").status_code == 403


def test_forged_trials_choices_and_double_answers_are_rejected(study, client):
    data, _, (mine, other, _) = study
    step = client.get(f"/api/s/{mine}/next").json()
    others_trial = trials_of(data, other)[0]["id"]
    url = f"/api/s/{mine}/answer"
    assert client.post(url, json={"trial_id": others_trial, "choice": 0}).status_code == 404
    for choice in (2, -1, "1", True, 0.5, None):
        assert client.post(url, json={"trial_id": step["trial_id"], "choice": choice}).status_code == 400, choice
    assert client.post(url, content=b"not json").status_code == 400
    later = trials_of(data, mine)[3]["id"]  # skipping ahead (past a practice trial) is not allowed
    assert client.post(url, json={"trial_id": later, "choice": 0}).status_code == 409
    assert client.post(url, json={"trial_id": step["trial_id"], "choice": 0}).status_code == 200
    assert client.post(url, json={"trial_id": step["trial_id"], "choice": 1}).status_code == 409
    assert client.get(f"/api/s/{mine}/image/{others_trial}/0").status_code == 404  # another's images
    assert client.get("/api/s/not-a-real-token-at-all/next").status_code == 404
    with db.opened(data) as conn:
        assert conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 1


@pytest.mark.parametrize("path", [
    "/uploads/../../etc/passwd", "/uploads/..%2F..%2Fetc%2Fpasswd/input.png",
    "/uploads/0123456789abcdef0123456789abcdef/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/try/..%2F..%2Fetc%2Fpasswd", "/s/..%2F..%2Fetc%2Fpasswd",
    "/admin/studies/1/results.%2E%2E%2Fetc%2Fpasswd", "/static/../../etc/passwd", "/../../etc/passwd"])
def test_a_path_in_a_request_never_reads_a_file(study, client, path):
    _, _, tokens = study
    for url in (path, f"/api/s/{tokens[0]}/image/1/..%2F..%2F..%2Fetc%2Fpasswd",
                f"/api/s/{tokens[0]}/image/..%2Fetc%2Fpasswd/0"):
        r = admin(client).get(url)
        assert r.status_code in (403, 404, 405, 422) and "root:" not in r.text, (url, r.status_code)
    r = client.post("/api/try", data={"model": "../../etc/passwd"}, files={"file": ("x.png", b"x", "image/png")})
    assert r.status_code == 400 and "unknown model" in r.json()["error"]


def test_uploads_that_are_not_images_or_too_large_are_refused_with_a_message(study, tmp_path):
    config = StudioConfig(data=study[0], admin_token=ADMIN, models=["hayao"], max_upload_mb=0.01, max_pixels=5000)
    client = TestClient(create_app(config))
    r = client.post("/api/try", data={"model": "hayao"}, files={"file": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 400 and "notes.txt: not an image" in r.json()["error"]
    big = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(big)
    r = client.post("/api/try", data={"model": "hayao"}, files={"file": ("big.png", big.read_bytes(), "image/png")})
    assert r.status_code == 413 and "100x100 is over the limit of 5,000 pixels" in r.json()["error"]
    r = client.post("/api/try", data={"model": "hayao"}, files={"file": ("huge.bin", b"\0" * 20000, "image/png")})
    assert r.status_code == 413 and "MB limit" in r.json()["error"]
    r = client.post("/api/try", data={"model": "hayao"}, files={"file": ("huge.png", b"\0" * 300_000, "image/png")})
    assert r.status_code == 413 and "MB limit" in r.json()["error"]  # refused before the body is parsed
    assert not (study[0] / "uploads").exists() or not list((study[0] / "uploads").iterdir())


@needs_weights
def test_an_uploaded_photo_is_cartoonized_and_deleted_after_the_keep_time(study, tmp_path):
    import time

    config = StudioConfig(data=study[0], admin_token=ADMIN, models=["hayao"],
                          weights={"hayao": str(WEIGHTS / "hayao")}, keep_hours=1)
    client = TestClient(create_app(config))
    photo = sorted(PHOTOS.glob("*.jp*g"))[0]
    r = client.post("/api/try", data={"model": "hayao"}, files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    upload = r.json()["id"]
    deadline = time.monotonic() + 120
    while (status := client.get(f"/api/try/{upload}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status["status"] == "done", status
    result = client.get(status["result_url"] + "?download=" + status["download_name"])
    assert result.status_code == 200 and "attachment" in result.headers["content-disposition"]
    assert max(Image.open(io.BytesIO(result.content)).size) == 450  # the authors' preprocessing: long side 450
    assert remove_expired_uploads(config, now=time.time() + 2 * 3600) == 1
    assert client.get(f"/api/try/{upload}").status_code == 404
    assert not (study[0] / "uploads" / upload).exists()


def test_a_restart_loses_nothing_and_a_backup_can_be_taken_while_running(study, client, tmp_path):
    data, study_id, tokens = study
    answer_all(client, tokens[0], data)
    before = study_results(data, study_id)[1]
    restarted = TestClient(create_app(StudioConfig(data=data, admin_token=ADMIN, models=["hayao"])))
    assert restarted.get(f"/api/s/{tokens[0]}/next").json() == {"done": True}
    assert study_results(data, study_id)[1] == before
    assert main(["study", "backup", "--data", str(data), "--out", str(tmp_path / "copy.sqlite3")]) == 0
    import sqlite3
    with sqlite3.connect(tmp_path / "copy.sqlite3") as copy:
        assert copy.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 9


def test_study_commands_name_bad_options_in_one_line(tmp_path, capsys):
    real, fakes = real_vs_fake_folders(tmp_path)
    data = str(tmp_path / "data")
    cases = [(["--kind", "real_vs_fake", "--real", str(real), "--fake", "nodir"], "--fake 'nodir': expected NAME=DIR"),
             (["--kind", "real_vs_fake", "--real", str(real), "--fake", f"a={tmp_path / 'missing'}"], "no such folder"),
             (["--kind", "real_vs_fake", "--real", str(real)], "--fake NAME=DIR is needed"),
             (["--kind", "closest_style", "--reference", str(real), "--candidates", f"a={fakes['cut']}"],
              "at least two methods"),
             (["--kind", "real_vs_fake", "--real", str(real), "--fake", f"a={tmp_path}"], "no images")]
    for argv, says in cases:
        assert main(["study", "create", "--data", data, "--name", "n", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and "\n" not in err and "Traceback" not in err, err
    assert main(["study", "results", "7", "--data", str(tmp_path / "nowhere")]) == 2
    assert "no studio database" in capsys.readouterr().err


def test_closest_style_study_with_the_reference_as_attention_check(tmp_path):
    real, fakes = real_vs_fake_folders(tmp_path)
    data = tmp_path / "data"
    assert main(["study", "create", "--data", str(data), "--kind", "closest_style", "--name", "style",
                 "--reference", str(real), "--candidates", f"cartoongan={fakes['cyclegan']}", f"cut={fakes['cut']}",
                 "--questions", "4", "--links", "2"]) == 0
    client = TestClient(create_app(StudioConfig(data=data, admin_token=ADMIN, models=[])))
    with db.opened(data) as conn:
        tokens = [r[0] for r in conn.execute("SELECT token FROM participants")]
    for token in tokens:
        for trial in trials_of(data, token):
            assert trial["reference_image"] is not None and len(trial["options"]) == 2
            if trial["kind"] != "test":  # the reference itself is among the options: the obvious answer
                assert trial["options"][trial["correct"]]["image"] == trial["reference_image"]
        answer_all(client, token, data, lambda t: t["correct"] if t["correct"] is not None else 1)
    _, results = study_results(data, 1)
    assert results.participants == 2 and not results.excluded
    for question in results.questions.values():
        assert sum(p.successes for p in question.values()) == sum(p.n for p in question.values()) / 2


def test_the_admin_page_creates_a_study_and_its_links(study, client, tmp_path):
    real, fakes = real_vs_fake_folders(tmp_path / "more")
    form = {"kind": "real_vs_fake", "name": "from the admin page", "real": str(real),
            "fakes": f"cyclegan={fakes['cyclegan']}\ncut={fakes['cut']}\n", "questions": "4", "practice": "0",
            "attention": "1", "show_ms": "0"}
    r = admin(client).post("/admin/studies", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/studies/2"
    r = client.post("/admin/studies/2/links", data={"count": "3"}, follow_redirects=True)
    assert r.status_code == 200 and r.text.count("/s/") == 3 and "from the admin page" in r.text
    bad = {**form, "fakes": "no equals sign"}
    r = client.post("/admin/studies", data=bad)
    assert r.status_code == 400 and "expected NAME=DIR" in r.text


def test_a_local_run_is_offered_and_translates(study, tmp_path, tiny_dataset):
    import time

    runs = tmp_path / "runs"
    assert main(["train", "--dataroot", str(tiny_dataset), "--checkpoints_dir", str(runs), "--name", "tiny",
                 "--netG", "resnet_1blocks", "--ngf", "4", "--ndf", "4", "--load_size", "32", "--crop_size", "32",
                 "--max_iters", "1", "--num_threads", "0", "--no_progress"]) == 0
    config = StudioConfig(data=study[0], admin_token=ADMIN, checkpoints_dir=runs)
    client = TestClient(create_app(config))
    assert 'value="run:tiny"' in client.get("/").text and 'value="hayao"' in client.get("/").text
    photo = tmp_path / "p.png"
    Image.new("RGB", (40, 30), (30, 120, 200)).save(photo)
    r = client.post("/api/try", data={"model": "run:tiny"}, files={"file": ("p.png", photo.read_bytes(), "image/png")})
    deadline = time.monotonic() + 60
    while (status := client.get(f"/api/try/{r.json()['id']}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["status"] == "done", status
    assert Image.open(io.BytesIO(client.get(status["result_url"]).content)).size == (40, 30)


def test_the_studio_command_serves_and_stops_on_ctrl_c(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from studio_helpers import free_port

    port = free_port()
    env = {**os.environ, "TRANSFIGURE_STUDIO_TOKEN": ADMIN}
    proc = subprocess.Popen([sys.executable, "-m", "transfigure", "studio", "--data", str(tmp_path / "d"), "--port",
                             str(port), "--models", "hayao"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
                time.sleep(0.2)
        assert "Try a model" in page
        admin_page = urllib.request.Request(f"http://127.0.0.1:{port}/admin",
                                            headers={"Authorization": f"Bearer {ADMIN}"})
        assert urllib.request.urlopen(admin_page, timeout=5).status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert f"/admin/login?token={ADMIN}" in out and "Traceback" not in err
    assert (tmp_path / "d" / "studio.sqlite3").is_file()
