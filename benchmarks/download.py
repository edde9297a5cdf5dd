"""Dataset downloads: what emo's resumable, checked download and atomic unpack cost against plain calls.

A server in its own process on 127.0.0.1 serves a file of --mb MB (Range requests honoured), so the
figures are of the client side, not of a network:
  (a) baseline: a plain `requests` streaming loop into a file (64 KiB chunks, as emo uses; and 1 MiB);
  (b) emo: `fetch` without and with the rich progress bar (to a console writing nowhere), which also
      checks the size and the sha256 and renames the .part into place;
  (c) resume: the server drops the first response half-way; one `fetch` call resumes with a Range request.
      Reported: its time against (b) and the bytes sent twice (the chunk in flight when the connection broke);
  (d) checksums: sha256 and md5 of the file (hashlib.file_digest), MB/s;
  (e) unpack: a zip of --clips small files (a RAVDESS-sized speech release is 1440 files), plain
      `zipfile.extractall` against emo's `unpack` (staging folder, rename, archive deleted).
Each timing is the median of --repeats runs. Writes benchmarks/results/download.json.

    python benchmarks/download.py [--mb 64] [--clips 1440] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from benchmarks.common import write_results  # noqa: E402

MB = 1_000_000


def serve(folder: str, port_queue, drop_marker: str) -> None:
    """Serve `folder` with Range support; while `drop_marker` exists, the next response is cut half-way
    (and the marker removed)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = Path(folder) / self.path.lstrip("/")
            size = path.stat().st_size
            start = 0
            if self.headers.get("Range"):
                start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            drop = os.path.exists(drop_marker)
            if drop:
                os.unlink(drop_marker)
            limit = (size - start) // 2 if drop else size - start
            with open(path, "rb") as source:
                source.seek(start)
                sent = 0
                while sent < limit:
                    block = source.read(min(1 << 20, limit - sent))
                    self.wfile.write(block)
                    sent += len(block)
            if drop:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def median_time(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_download(url: str, target: Path, chunk: int) -> None:
    import requests

    with requests.get(url, stream=True, timeout=30) as response, open(target, "wb") as out:
        response.raise_for_status()
        for block in response.iter_content(chunk):
            out.write(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=64, help="size of the served file, MB")
    parser.add_argument("--clips", type=int, default=1440, help="files in the zip of (e)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from rich.console import Console

    from emocli.datasets.base import Checksum, RemoteFile
    from emocli.datasets.download import PART_SUFFIX, fetch, unpack

    work = Path(tempfile.mkdtemp(prefix="emo-bench-download-"))
    served = work / "served"
    served.mkdir()
    payload = served / "payload.bin"
    payload.write_bytes(os.urandom(args.mb * MB))
    with open(payload, "rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    drop_marker = work / "drop-next"
    ports = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(str(served), ports, str(drop_marker)), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{ports.get(timeout=30)}/payload.bin"
    remote = RemoteFile(
        url=url, name="payload.bin", size=args.mb * MB, checksum=Checksum(algorithm="sha256", value=sha256, source="-")
    )
    out = work / "out"
    figures: dict = {"file_mb": args.mb, "repeats": args.repeats, "load_average_1min": os.getloadavg()[0]}

    def fresh() -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    def timed(name: str, run) -> float:
        def once():
            fresh()
            run()

        seconds = median_time(once, args.repeats)
        figures[name] = {"seconds": round(seconds, 3), "mb_per_s": round(args.mb / seconds, 1)}
        print(f"{name:32s} {seconds:7.3f} s  {args.mb / seconds:8.1f} MB/s")
        return seconds

    plain = timed("plain_requests_64KiB", lambda: plain_download(url, out / "payload.bin", 1 << 16))
    timed("plain_requests_1MiB", lambda: plain_download(url, out / "payload.bin", 1 << 20))
    emo = timed("emo_fetch", lambda: fetch(remote, out, progress=False))
    quiet_console = Console(file=open(os.devnull, "w"), force_terminal=True)
    timed("emo_fetch_progress_bar", lambda: fetch(remote, out, progress=True, console=quiet_console))
    figures["emo_fetch_vs_plain_64KiB"] = round(emo / plain, 3)

    def interrupted() -> None:
        drop_marker.touch()
        fetch(remote, out, progress=False, retry_wait=0.0)

    resumed = timed("emo_fetch_dropped_half_way_and_resumed", interrupted)
    figures["resumed_vs_uninterrupted"] = round(resumed / emo, 3)
    fresh()
    drop_marker.touch()
    try:
        fetch(remote, out, progress=False, attempts=1)
    except Exception:  # the dropped first attempt: what it kept is what a resume does not fetch again
        kept = (out / ("payload.bin" + PART_SUFFIX)).stat().st_size
        figures["bytes_sent_twice_on_resume"] = args.mb * MB // 2 - kept
        print(f"bytes sent twice on a resume: {figures['bytes_sent_twice_on_resume']:,}")

    for algorithm in ("sha256", "md5"):
        def digest(algorithm=algorithm):
            with open(payload, "rb") as handle:
                hashlib.file_digest(handle, algorithm)

        seconds = median_time(digest, args.repeats)
        figures[f"{algorithm}_mb_per_s"] = round(args.mb / seconds, 1)
        print(f"{algorithm:32s} {args.mb / seconds:8.1f} MB/s")

    archive = work / "clips.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for i in range(args.clips):
            zipped.writestr(f"Actor_{i % 24 + 1:02d}/clip{i:04d}.wav", os.urandom(20_000))
    zip_file = RemoteFile(url="-", name="clips.zip", size=archive.stat().st_size, unpack="zip")

    def prepared_time(prepare, run) -> float:
        """Median time of `run` alone, `prepare` (a fresh folder, a copy of the archive) untimed."""
        times = []
        for _ in range(args.repeats):
            prepared = prepare()
            start = time.perf_counter()
            run(prepared)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def fresh_copy() -> Path:
        fresh()
        return Path(shutil.copy(archive, out / "clips.zip"))  # unpack deletes the archive it unpacked

    def plain_unzip(copy: Path) -> None:
        with zipfile.ZipFile(copy) as zipped:
            zipped.extractall(out / "clips")

    plain_seconds = prepared_time(fresh_copy, plain_unzip)
    emo_seconds = prepared_time(fresh_copy, lambda copy: unpack(zip_file, copy, out))
    figures["unpack"] = {
        "files": args.clips,
        "archive_mb": round(archive.stat().st_size / MB, 1),
        "plain_extractall_s": round(plain_seconds, 3),
        "emo_unpack_s": round(emo_seconds, 3),
        "emo_vs_plain": round(emo_seconds / plain_seconds, 3),
    }
    print(f"unpack {args.clips} files: plain extractall {plain_seconds:.3f} s, emo unpack {emo_seconds:.3f} s")

    server.terminate()
    shutil.rmtree(work, ignore_errors=True)
    print(write_results("download", figures))


if __name__ == "__main__":
    main()
