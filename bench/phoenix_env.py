"""A live Arize Phoenix for the "tracing on" variant of bench/run.py: started on the load core, removed afterwards.

Phoenix runs from `.tools/phoenix` (`make phoenix`) on free loopback ports with a temporary working directory,
pinned to the load core at idle priority: in production the collector has a machine of its own, and here it must
not take cycles from wrk or the upstream. Sluice reaches it through `PHOENIX_COLLECTOR_ENDPOINT`."""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator

import procs
from logdb import Unavailable
from targets import ROOT

START_TIMEOUT = 120.0


def executable() -> str | None:
    found = ROOT / ".tools" / "phoenix" / "bin" / "phoenix"
    return str(found) if found.exists() else None


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextlib.contextmanager
def environment(wanted: bool, cpus: str) -> Iterator[dict[str, str]]:
    """`PHOENIX_COLLECTOR_ENDPOINT` for a Phoenix started now on `cpus` (nothing when not `wanted`)."""
    if not wanted:
        yield {}
        return
    phoenix = executable()
    if phoenix is None:
        raise Unavailable("Phoenix is not installed: run `make phoenix`")
    port, grpc_port = procs.free_port(), procs.free_port()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-phoenix-") as folder:
        env = {**os.environ, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port),
               "PHOENIX_GRPC_PORT": str(grpc_port), "PHOENIX_WORKING_DIR": folder}
        with open(os.path.join(folder, "phoenix.log"), "wb") as log:
            process = subprocess.Popen(["taskset", "-c", cpus, "chrt", "--idle", "0", phoenix, "serve"], env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                deadline = time.monotonic() + START_TIMEOUT
                while not _healthy(port):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise Unavailable(f"Phoenix did not start (see {folder}/phoenix.log)")
                    time.sleep(0.5)
                yield {"PHOENIX_COLLECTOR_ENDPOINT": f"http://127.0.0.1:{port}"}
            finally:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
