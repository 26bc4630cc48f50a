"""Tests of fetching missing raw files (ID_generation/preprocessing/download.py) and of raw folders
being only read by preprocessing. Nothing here leaves 127.0.0.1."""
from __future__ import annotations

import http.server
import os
import socket
import stat
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import ID_generation.preprocessing.amazon as amazon_module
from ID_generation.preprocessing.download import MissingRawDataError, RawFile, download, ensure_raw_files
from ID_generation.preprocessing.generated import write_generated_dataset
from ID_generation.preprocessing.pipeline import preprocess
from src.config import DataConfig, GeneratorConfig

SMALL = GeneratorConfig(seed=0, n_users=200, n_groups=4, items_per_group=8, cold_items_per_group=1,
                        min_seq_len=5, max_seq_len=10, p_follow=0.8)
PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: more than one 1 MiB read chunk


# --------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(autouse=True)
def local_network_only(monkeypatch):
    """Fail the test if anything tries to open a non-local address (and never let it connect)."""
    real_urlopen = urllib.request.urlopen
    outside: list[str] = []

    def guarded(url, *args, **kwargs):
        full = url if isinstance(url, str) else url.full_url
        if urllib.parse.urlsplit(full).hostname not in ("127.0.0.1", "localhost"):
            outside.append(full)
            raise OSError(f"test network guard: refused {full}")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)
    yield
    assert not outside, f"tried to reach the internet: {outside}"


def closed_port() -> int:
    """A local port with nothing listening (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """Serves `files` (url path -> bytes) on 127.0.0.1; other paths get 404. Counts requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(self.path)
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    servers = []

    def start(files: dict[str, bytes]) -> LocalServer:
        servers.append(LocalServer(files))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


class ShortBodyHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes, sends 500, closes: a connection that drops mid-download."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * 500)
        self.close_connection = True

    def log_message(self, *args):
        pass


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder` (itself included) with its kind, size, mode and mtime_ns."""
    entries = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        st = path.lstat()
        entries[str(path.relative_to(folder))] = (stat.S_IFMT(st.st_mode), st.st_size, stat.S_IMODE(st.st_mode),
                                                  st.st_mtime_ns)
    return entries


def make_read_only(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    folder.chmod(0o555)


@pytest.fixture
def restore_permissions():
    folders: list[Path] = []
    yield folders.append
    for folder in folders:
        folder.chmod(0o755)
        for path in folder.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)


def amazon_config(raw: Path, processed: Path, name: str = "Beauty") -> DataConfig:
    return DataConfig(type="Amazon", name=name, raw_data_path=raw, processed_data_path=processed,
                      max_items_per_seq=20, features_needed=("title", "price", "brand", "categories"),
                      prompt_format="amazon", text_cleaning="published", user_core=5, item_core=5, user_stride=1,
                      content_model="all-MiniLM-L6-v2", embedding_batch_size=64, generator=None)


def assert_names_missing_file(message: str, raw: RawFile) -> None:
    assert raw.path.name in message
    assert str(raw.path.parent.resolve()) in message
    assert raw.url in message
    assert "by hand" in message


# --------------------------------------------------------------------------------------------
# ensure_raw_files / download


def test_present_files_are_not_touched_and_no_request_is_made(tmp_path, monkeypatch):
    files = [RawFile(tmp_path / "reviews_X_5.json.gz", f"http://127.0.0.1:{closed_port()}/a"),
             RawFile(tmp_path / "meta_X.json.gz", f"http://127.0.0.1:{closed_port()}/b")]
    for i, raw in enumerate(files):
        raw.path.write_bytes(b"old content %d" % i)
        os.utime(raw.path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000 + i))
    before = snapshot(tmp_path)
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a))
    ensure_raw_files(files, timeout=1)
    assert calls == []
    assert snapshot(tmp_path) == before
    assert files[0].path.read_bytes() == b"old content 0"


def test_unreachable_address_error_lists_every_missing_file_and_leaves_nothing(tmp_path):
    port = closed_port()
    folder = tmp_path / "raw" / "amazon"
    folder.mkdir(parents=True)
    files = [RawFile(folder / "reviews_X_5.json.gz", f"http://127.0.0.1:{port}/reviews_X_5.json.gz"),
             RawFile(folder / "meta_X.json.gz", f"http://127.0.0.1:{port}/meta_X.json.gz")]
    with pytest.raises(MissingRawDataError) as info:
        ensure_raw_files(files, timeout=2)
    message = str(info.value)
    for raw in files:
        assert_names_missing_file(message, raw)
    assert isinstance(info.value, FileNotFoundError)
    assert list(folder.iterdir()) == []


def test_error_names_resolved_folder_for_a_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = RawFile(Path("data") / ".." / "data" / "f.json.gz", f"http://127.0.0.1:{closed_port()}/f.json.gz")
    with pytest.raises(MissingRawDataError) as info:
        ensure_raw_files([raw], timeout=2)
    assert str((tmp_path / "data").resolve()) in str(info.value)


def test_only_missing_files_are_listed(tmp_path):
    port = closed_port()
    present = RawFile(tmp_path / "present.json.gz", f"http://127.0.0.1:{port}/present.json.gz")
    present.path.write_bytes(b"here")
    missing = RawFile(tmp_path / "absent.json.gz", f"http://127.0.0.1:{port}/absent.json.gz")
    with pytest.raises(MissingRawDataError) as info:
        ensure_raw_files([present, missing], timeout=2)
    assert "absent.json.gz" in str(info.value)
    assert "present.json.gz" not in str(info.value)


def test_download_from_local_server_is_exact_atomic_and_not_repeated(tmp_path, server):
    srv = server({"/reviews_X_5.json.gz": PAYLOAD, "/meta_X.json.gz": b"meta bytes"})
    folder = tmp_path / "raw" / "amazon"  # does not exist yet
    files = [RawFile(folder / "reviews_X_5.json.gz", srv.url("/reviews_X_5.json.gz")),
             RawFile(folder / "meta_X.json.gz", srv.url("/meta_X.json.gz"))]
    ensure_raw_files(files, timeout=5)
    assert files[0].path.read_bytes() == PAYLOAD
    assert files[1].path.read_bytes() == b"meta bytes"
    assert sorted(p.name for p in folder.iterdir()) == ["meta_X.json.gz", "reviews_X_5.json.gz"]
    assert len(srv.requests) == 2
    before = snapshot(folder)
    ensure_raw_files(files, timeout=5)
    assert len(srv.requests) == 2
    assert snapshot(folder) == before


def test_download_function_writes_served_bytes(tmp_path, server):
    srv = server({"/f.bin": b"abc" * 10})
    download(srv.url("/f.bin"), tmp_path / "f.bin", timeout=5)
    assert (tmp_path / "f.bin").read_bytes() == b"abc" * 10


def test_http_404_error_names_file_and_url(tmp_path, server):
    srv = server({})
    raw = RawFile(tmp_path / "meta_X.json.gz", srv.url("/meta_X.json.gz"))
    with pytest.raises(MissingRawDataError) as info:
        ensure_raw_files([raw], timeout=5)
    assert_names_missing_file(str(info.value), raw)
    assert "404" in str(info.value)
    assert srv.requests == ["/meta_X.json.gz"]
    assert list(tmp_path.iterdir()) == []


def test_one_failure_does_not_stop_the_other_downloads(tmp_path, server):
    srv = server({"/ok.gz": b"fine"})
    ok, bad = RawFile(tmp_path / "ok.gz", srv.url("/ok.gz")), RawFile(tmp_path / "bad.gz", srv.url("/bad.gz"))
    with pytest.raises(MissingRawDataError) as info:
        ensure_raw_files([bad, ok], timeout=5)
    assert ok.path.read_bytes() == b"fine"
    assert "- bad.gz" in str(info.value)
    assert "- ok.gz" not in str(info.value) and "/ok.gz" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.gz"]


def test_connection_dropped_mid_download_leaves_no_file(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ShortBodyHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        raw = RawFile(tmp_path / "f.json.gz", f"http://127.0.0.1:{httpd.server_address[1]}/f.json.gz")
        with pytest.raises(MissingRawDataError):
            ensure_raw_files([raw], timeout=5)
        assert not raw.path.exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# Raw folders are only read


def test_preprocess_leaves_read_only_raw_folder_unchanged(tmp_path, restore_permissions):
    raw = tmp_path / "raw"
    write_generated_dataset(raw, "Beauty", SMALL)
    restore_permissions(raw)
    make_read_only(raw)
    before = snapshot(raw)
    cfg = amazon_config(raw, tmp_path / "processed")
    first = preprocess(cfg)
    second = preprocess(cfg)
    assert snapshot(raw) == before
    assert not first.cached and second.cached
    assert len(first.sequences) > 0 and len(first.item_texts) == first.sequences.n_items
    assert first.sequence_file.parent == tmp_path / "processed"


def test_missing_file_in_read_only_folder_without_network_is_named(tmp_path, monkeypatch, restore_permissions):
    port = closed_port()
    monkeypatch.setattr(amazon_module, "BASE_URL", f"http://127.0.0.1:{port}/categoryFiles")
    raw = tmp_path / "raw"
    files = write_generated_dataset(raw, "Beauty", SMALL)
    files.meta.unlink()
    restore_permissions(raw)
    make_read_only(raw)
    before = snapshot(raw)
    with pytest.raises(MissingRawDataError) as info:
        preprocess(amazon_config(raw, tmp_path / "processed"))
    message = str(info.value)
    assert_names_missing_file(message, RawFile(files.meta, f"http://127.0.0.1:{port}/categoryFiles/meta_Beauty.json.gz"))
    assert "reviews_Beauty_5.json.gz" not in message
    assert snapshot(raw) == before
    assert not (tmp_path / "processed").exists()
