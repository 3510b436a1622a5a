"""A real `dagster dev` for end-to-end tests: started in its own process group, queried over GraphQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ftops_tests.conftest import REPO_ROOT
from ftops_tests.services import free_port, stop_process_group

BIN = Path(sys.executable).parent


def project_folder(folder: Path) -> Path:
    """A folder laid out like the repository root for `dagster dev` (instance config + workspace)."""
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO_ROOT / name, folder / name)
    return folder


class DagsterDev:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> DagsterDev:
        log = (self.folder / "dagster-dev.log").open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.wait_for(lambda: self.query("{ version }"), "dagster dev to answer", timeout_s=180)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)

    def query(self, text: str) -> dict | None:
        request = urllib.request.Request(self.url, data=json.dumps({"query": text}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())["data"]
        except OSError:
            return None

    def runs(self) -> list[dict]:
        data = self.query("{ runsOrError { ... on Runs { results { runId jobName status tags { key value } } } } }")
        return data["runsOrError"]["results"] if data else []

    def wait_for(self, predicate, what: str, timeout_s: float = 240, interval_s: float = 1.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"dagster dev exited with {self.proc.returncode} while waiting for {what}:\n"
                                     + (self.folder / "dagster-dev.log").read_text()[-3000:])
            value = predicate()
            if value:
                return value
            time.sleep(interval_s)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; runs: "
                             f"{[(r['jobName'], r['status']) for r in self.runs()]}")


def rendered_dom(url: str, tmp_path: Path, budget_ms: int = 20000) -> str:
    """The page as a real browser renders it (headless Chromium runs the UI's JavaScript)."""
    from ftops_tests.services import require_binary

    chromium = require_binary("chromium", "a real browser opens the Dagster UI")
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--virtual-time-budget={budget_ms}",
         # tall enough that the UI's virtualised asset list renders every row of the catalogue
         "--window-size=1600,5000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
