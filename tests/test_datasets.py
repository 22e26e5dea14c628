"""`transfigure data download NAME` against a file server on 127.0.0.1 serving small
archives made here: download and extract (zip and tar.gz), resume with a Range request,
damaged archives leave no dataset folder, hostile archives write nothing outside."""
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from transfigure.cli import main
from transfigure.data import registry


def png(color) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(out, "PNG")
    return out.getvalue()


def cyclegan_zip(top="mini", extra=()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for sub in ("trainA", "trainB", "testA", "testB"):
            for i in range(3):
                z.writestr(f"{top}/{sub}/{i}.png", png((40 * i, 90, 200)))
        for name, data in extra:
            z.writestr(name, data)
    return out.getvalue()


def pix2pix_tar(top="facades", extra=()) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as t:
        for sub in ("train", "val", "test"):
            for i in range(2):
                data = png((10, 60 * i, 90))
                info = tarfile.TarInfo(f"{top}/{sub}/{i}.jpg")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        for info, data in extra:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


class Server:
    """Serves `files` by URL path, honours Range, and can cut the first response short."""

    def __init__(self):
        self.files, self.requests, self.cut_after = {}, [], {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                cut = server.cut_after.pop(self.path, None)
                self.wfile.write(body[:cut] if cut is not None else body)
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(monkeypatch):
    s = Server()
    monkeypatch.setenv(registry.MIRROR_ENV, s.url)
    yield s
    s.httpd.shutdown()


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err.strip()


def test_both_archive_formats_download_extract_and_are_counted(server, tmp_path, capsys):
    server.files["/cyclegan/datasets/mini.zip"] = cyclegan_zip()
    server.files["/pix2pix/datasets/facades.tar.gz"] = pix2pix_tar()
    code, out, err = run(capsys, "data", "download", "mini", "--root", tmp_path, "--no_progress")
    assert code == 0, err
    assert "testA 3, testB 3, trainA 3, trainB 3" in out
    assert sorted(p.name for p in (tmp_path / "mini").iterdir()) == ["testA", "testB", "trainA", "trainB"]
    code, out, err = run(capsys, "data", "download", "facades_pix2pix", "--root", tmp_path, "--no_progress")
    assert code == 0, err
    assert "test 2, train 2, val 2" in out and (tmp_path / "facades_pix2pix" / "train" / "0.jpg").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["facades_pix2pix", "mini"]  # archives gone
    assert registry.resolve_dataroot("mini", tmp_path) == str(tmp_path / "mini")
    code, out, _ = run(capsys, "data", "list", "--root", tmp_path)
    assert re.search(r"mini\s.*12 images", out)


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path, capsys):
    archive = cyclegan_zip(extra=[("mini/notes.bin", bytes(range(256)) * 200)])
    server.files["/cyclegan/datasets/mini.zip"] = archive
    server.cut_after["/cyclegan/datasets/mini.zip"] = 20_000
    code, _, err = run(capsys, "data", "download", "mini", "--root", tmp_path, "--no_progress")
    assert code == 2 and "run the same command again to resume" in err
    assert not (tmp_path / "mini").exists() and (tmp_path / ".mini.zip.part").stat().st_size == 20_000
    code, _, err = run(capsys, "data", "download", "mini", "--root", tmp_path, "--no_progress")
    assert code == 0, err
    assert server.requests[-1] == ("/cyclegan/datasets/mini.zip", "bytes=20000-")  # the rest, not a restart
    assert (tmp_path / "mini" / "notes.bin").read_bytes() == bytes(range(256)) * 200
    assert not (tmp_path / ".mini.zip.part").exists()


@pytest.mark.parametrize("damage", ["truncated zip", "corrupted zip", "truncated tar.gz"])
def test_a_damaged_archive_leaves_no_dataset_folder(server, tmp_path, capsys, damage):
    if damage == "truncated zip":
        name, data = "mini", cyclegan_zip()[:-300]  # sent whole as it is: only the archive shows it
    elif damage == "corrupted zip":
        data = bytearray(cyclegan_zip())
        data[200:210] = b"\xff" * 10  # inside the first member's compressed bytes: its CRC fails
        name, data = "mini", bytes(data)
    else:
        name, data = "facades_pix2pix", pix2pix_tar()[:-120]
    server.files["/cyclegan/datasets/mini.zip" if name == "mini" else "/pix2pix/datasets/facades.tar.gz"] = data
    code, _, err = run(capsys, "data", "download", name, "--root", tmp_path, "--no_progress")
    assert code == 2 and ("damaged" in err or "corrupted" in err), err
    assert list(tmp_path.iterdir()) == []  # no dataset folder, no half-extracted one, no bad archive


def _link(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def _file(name, data=b"evil"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


@pytest.mark.parametrize("kind,member", [
    ("zip", "mini/../../evil.txt"), ("zip", "/tmp/evil_absolute.txt"), ("zip", "symlink"),
    ("tar", _file("facades/../../evil.txt")), ("tar", _file("/tmp/evil_absolute.txt")),
    ("tar", _link("facades/train/link.jpg", "/etc/passwd"))])
def test_hostile_archives_are_refused_and_write_nothing_outside(server, tmp_path, capsys, kind, member):
    root = tmp_path / "root" / "datasets"
    root.mkdir(parents=True)
    if kind == "zip":
        if member == "symlink":
            info = zipfile.ZipInfo("mini/trainA/link.png")
            info.external_attr = (0o120777 << 16)  # a symbolic link, as zip records one
            data = io.BytesIO()
            with zipfile.ZipFile(data, "w") as z:
                z.writestr(info, "/etc/passwd")
            server.files["/cyclegan/datasets/mini.zip"] = data.getvalue()
        else:
            server.files["/cyclegan/datasets/mini.zip"] = cyclegan_zip(extra=[(member, b"evil")])
        name = "mini"
    else:
        server.files["/pix2pix/datasets/facades.tar.gz"] = pix2pix_tar(extra=[member])
        name = "facades_pix2pix"
    code, _, err = run(capsys, "data", "download", name, "--root", root, "--no_progress")
    assert code == 2 and "refused, nothing extracted" in err, err
    assert list(root.iterdir()) == []
    assert not list(tmp_path.rglob("evil*")) and not __import__("os").path.exists("/tmp/evil_absolute.txt")


def test_the_registry_lists_every_dataset_with_the_reference_scripts_urls(capsys, monkeypatch):
    monkeypatch.delenv(registry.MIRROR_ENV, raising=False)
    # The names and URL patterns of the reference's datasets/download_cyclegan_dataset.sh and
    # download_pix2pix_dataset.sh.
    cyclegan = {"apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo",
                "ukiyoe2photo", "vangogh2photo", "maps", "facades", "iphone2dslr_flower", "ae_photos", "grumpifycat",
                "mini", "mini_pix2pix", "mini_colorization"}
    pix2pix = {"cityscapes", "night2day", "edges2handbags", "edges2shoes", "facades", "maps"}
    assert {d.name for d in registry.DATASETS.values() if d.kind == "cyclegan"} == cyclegan
    assert {d.name for d in registry.DATASETS.values() if d.kind == "pix2pix"} == pix2pix
    for d in registry.DATASETS.values():
        pattern = (r"http://efrosgans\.eecs\.berkeley\.edu/cyclegan/datasets/(\w+)\.zip" if d.kind == "cyclegan"
                   else r"http://efrosgans\.eecs\.berkeley\.edu/pix2pix/datasets/(\w+)\.tar\.gz")
        assert re.fullmatch(pattern, d.url).group(1) == d.name
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert all(key in out for key in registry.DATASETS) and len(out.splitlines()) == 1 + len(registry.DATASETS)


def test_a_name_not_downloaded_says_how_and_cityscapes_says_where(tmp_path, capsys):
    code = main(["train", "--dataroot", "horse2zebra", "--checkpoints_dir", str(tmp_path / "ck"), "--name", "r"])
    err = capsys.readouterr().err
    assert code == 2 and "transfigure data download horse2zebra" in err
    code = main(["data", "download", "cityscapes", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "cityscapes-dataset.com" in err and "data prepare-cityscapes" in err
    assert list(tmp_path.iterdir()) == []
