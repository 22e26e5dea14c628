"""50 participants answering at once against the studio on 127.0.0.1, every answer sent
twice concurrently: no answer is lost and none is stored twice."""
import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from studio_helpers import ADMIN, live_server, real_vs_fake_folders
from transfigure.studio import db
from transfigure.studio.app import StudioConfig, create_app
from transfigure.studio.studies import StudySettings, create_links, create_study

PARTICIPANTS = 50


def call(url, body=None):
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_fifty_concurrent_participants_lose_no_answer_and_double_none(tmp_path):
    data = tmp_path / "data"
    real, fakes = real_vs_fake_folders(tmp_path)
    study_id = create_study(data, "real_vs_fake", "load", StudySettings(questions=6, practice=1, attention=1),
                            real=real, fakes=fakes)
    tokens = create_links(data, study_id, PARTICIPANTS)
    accepted, rejected, lock = [0], [0], threading.Lock()
    started = time.monotonic()
    with live_server(create_app(StudioConfig(data=data, admin_token=ADMIN, models=[]))) as base, \
            ThreadPoolExecutor(16) as duplicates:

        def participant(token):
            while not (step := call(f"{base}/api/s/{token}/next")[1])["done"]:
                answer = {"trial_id": step["trial_id"], "choice": step["position"] % 2}
                # The same answer twice at once, as from a double click on a slow network.
                twins = [duplicates.submit(call, f"{base}/api/s/{token}/answer", answer) for _ in range(2)]
                codes = sorted(f.result()[0] for f in twins)
                with lock:
                    accepted[0] += codes.count(200)
                    rejected[0] += codes.count(409)
                assert codes == [200, 409], codes
            return token

        copies, stop = [], threading.Event()

        def back_up_while_running():  # the database copied consistently while answers pour in
            while not stop.wait(0.3):
                copies.append(db.backup(data, tmp_path / f"copy{len(copies)}.sqlite3"))

        copier = threading.Thread(target=back_up_while_running)
        copier.start()
        try:
            with ThreadPoolExecutor(PARTICIPANTS) as crowd:
                finished = list(crowd.map(participant, tokens, timeout=240))
        finally:
            stop.set()
            copier.join()
    elapsed = time.monotonic() - started
    with db.opened(data) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        trials = conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        done = conn.execute("SELECT COUNT(*) FROM participants WHERE finished IS NOT NULL").fetchone()[0]
    print(f"\n{PARTICIPANTS} participants, {trials} trials, {accepted[0]} answers accepted, {rejected[0]} duplicates "
          f"refused, {stored} stored, in {elapsed:.1f} s")
    assert len(finished) == PARTICIPANTS and done == PARTICIPANTS
    assert stored == accepted[0] == trials == rejected[0]
    assert elapsed < 240
    assert copies
    counts = []
    for copy in copies:
        with sqlite3.connect(copy) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            counts.append(conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
    assert counts == sorted(counts) and counts[-1] <= stored
    print(f"{len(copies)} backups taken while it ran, holding {counts[0]} ... {counts[-1]} answers")
