"""Downloads against a real HTTP server on 127.0.0.1: checksums, resume after a dropped connection, mirrors."""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from nmt.data.download import RemoteFile, fetch
from nmt.errors import NmtError

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB


class FlakyHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder with Range support; the first full request of `drop_once` files is cut mid-body."""

    drop_once: set = set()
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.directory) / self.path.lstrip("/")
        type(self).requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.path in type(self).drop_once and not self.headers.get("Range"):
            type(self).drop_once.discard(self.path)
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops a third of the way in
            return
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "corpus.bin").write_bytes(PAYLOAD)
    FlakyHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: FlakyHandler(*a, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def remote(url, payload=PAYLOAD, sha256=None):
    return RemoteFile("corpus.bin", f"{url}/corpus.bin", sha256 or hashlib.sha256(payload).hexdigest(), len(payload))


def test_download_verifies_and_lands_under_its_name(server, tmp_path):
    url, _ = server
    path = fetch(remote(url), tmp_path / "dl")
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "dl" / "corpus.bin.part").exists()
    before = len(FlakyHandler.requests)
    assert fetch(remote(url), tmp_path / "dl") == path  # already there and verified: no request
    assert len(FlakyHandler.requests) == before


def test_a_dropped_connection_is_resumed_with_a_range_request(server, tmp_path):
    url, _ = server
    FlakyHandler.drop_once = {"/corpus.bin"}
    path = fetch(remote(url), tmp_path / "dl", backoff=0.01)
    assert path.read_bytes() == PAYLOAD
    ranges = [r for _, r in FlakyHandler.requests if r]
    assert ranges and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"


def test_a_checksum_mismatch_stops_and_keeps_no_file(server, tmp_path):
    url, _ = server
    with pytest.raises(NmtError, match="SHA-256"):
        fetch(remote(url, sha256="0" * 64), tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_no_verify_accepts_a_repackaged_file(server, tmp_path):
    url, _ = server
    path = fetch(remote(url, sha256="0" * 64), tmp_path / "dl", verify_checksum=False)
    assert path.read_bytes() == PAYLOAD


def test_mirror_url_and_mirror_folder_replace_the_upstream_address(server, tmp_path):
    url, root = server
    upstream = RemoteFile("corpus.bin", "http://127.0.0.1:9/unreachable/corpus.bin",
                          hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD))
    assert fetch(upstream, tmp_path / "a", mirror=url).read_bytes() == PAYLOAD
    assert fetch(upstream, tmp_path / "b", mirror=str(root)) == root / "corpus.bin"
    with pytest.raises(NmtError, match="not found"):
        fetch(RemoteFile("other.bin", "http://127.0.0.1:9/x"), tmp_path / "c", mirror=str(root))


def test_http_errors_are_one_clear_line(server, tmp_path):
    url, _ = server
    with pytest.raises(NmtError, match="HTTP 404"):
        fetch(RemoteFile("missing.bin", f"{url}/missing.bin"), tmp_path / "dl")
