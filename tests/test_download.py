"""download(): real HTTP against a local server; a failed download never leaves a file."""
import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from transfigure.download import DownloadError, cache_dir, download

BODY = bytes(range(256)) * 4000  # ~1 MB: several read chunks


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/file.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/truncated.bin":  # promises more than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY) + 5000))
            self.end_headers()
            self.wfile.write(BODY)
            self.close_connection = True
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _only(folder):
    return sorted(p.name for p in folder.iterdir())


def test_download_success(server, tmp_path):
    dest = tmp_path / "sub" / "file.bin"
    out = download(f"{server}/file.bin", dest, sha256=hashlib.sha256(BODY).hexdigest(), size=len(BODY),
                   progress=False)
    assert out == dest and dest.read_bytes() == BODY
    assert _only(dest.parent) == ["file.bin"]  # no temporary file left behind


def test_checksum_mismatch_not_cached(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="sha256") as e:
        download(f"{server}/file.bin", dest, sha256="0" * 64, progress=False, hint="pass --weights PATH")
    assert f"{server}/file.bin" in str(e.value) and "pass --weights PATH" in str(e.value)
    assert _only(tmp_path) == []
    # A good file already there survives a failed re-download.
    dest.write_bytes(b"old")
    with pytest.raises(DownloadError, match="expected 7"):
        download(f"{server}/file.bin", dest, size=7, progress=False)
    assert dest.read_bytes() == b"old" and _only(tmp_path) == ["file.bin"]


def test_truncated_response_not_cached(server, tmp_path):
    dest = tmp_path / "truncated.bin"
    with pytest.raises(DownloadError, match=f"closed after {len(BODY)} of {len(BODY) + 5000} bytes"):
        download(f"{server}/truncated.bin", dest, progress=False)
    assert _only(tmp_path) == []


def test_404_names_url(server, tmp_path):
    url = f"{server}/missing.npy"
    with pytest.raises(DownloadError, match="HTTP 404") as e:
        download(url, tmp_path / "missing.npy", progress=False, hint="offline? pass --weights PATH")
    assert url in str(e.value) and str(e.value).endswith("offline? pass --weights PATH")
    assert _only(tmp_path) == []


def test_unreachable_names_url(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.npy"
    with pytest.raises(DownloadError, match="cannot download") as e:
        download(url, tmp_path / "x.npy", progress=False, timeout=5)
    assert url in str(e.value)
    assert _only(tmp_path) == []


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFIGURE_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("TRANSFIGURE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "transfigure"
