"""Downloads against a real HTTP server on 127.0.0.1: checksums, resume after a dropped connection, mirrors."""

import hashlib

import pytest

from conftest import FileServer

from nmt.data.download import RemoteFile, fetch
from nmt.errors import NmtError

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB


@pytest.fixture
def server(file_server):
    (file_server.root / "corpus.bin").write_bytes(PAYLOAD)
    return file_server.url, file_server.root


def remote(url, payload=PAYLOAD, sha256=None):
    return RemoteFile("corpus.bin", f"{url}/corpus.bin", sha256 or hashlib.sha256(payload).hexdigest(), len(payload))


def test_download_verifies_and_lands_under_its_name(server, tmp_path):
    url, _ = server
    path = fetch(remote(url), tmp_path / "dl")
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "dl" / "corpus.bin.part").exists()
    before = len(FileServer.requests)
    assert fetch(remote(url), tmp_path / "dl") == path  # already there and verified: no request
    assert len(FileServer.requests) == before


def test_a_dropped_connection_is_resumed_with_a_range_request(server, tmp_path):
    url, _ = server
    FileServer.drop_once = {"/corpus.bin"}
    path = fetch(remote(url), tmp_path / "dl", backoff=0.01)
    assert path.read_bytes() == PAYLOAD
    ranges = [r for _, r in FileServer.requests if r]
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
