"""On CI (`CI` set) a skipped test fails, so a test that never ran cannot pass for one that did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftops_tests.conftest import REPO_ROOT, skip_or_fail

TESTS = '''
import pytest

def test_skips():
    pytest.skip("no service here")

def test_importorskip():
    pytest.importorskip("a_module_that_does_not_exist")

@pytest.mark.skipif(True, reason="never on this platform")
def test_skipif():
    pass

@pytest.mark.ci_may_skip("needs a machine without a GPU")
def test_allowed_to_skip():
    pytest.skip("this machine has a GPU")

def test_realdata(realdata):
    pass
'''


def _run(tmp_path: Path, ci: str | None) -> str:
    (tmp_path / "conftest.py").write_text("from ftops_tests.conftest import *  # noqa: F401,F403\n")
    (tmp_path / "test_sample.py").write_text(TESTS)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {
        "PYTHONPATH": str(REPO_ROOT), "FTOPS_REALDATA": str(tmp_path / "no-realdata-here")}
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


def test_skips_stay_skips_off_ci(tmp_path: Path) -> None:
    out = _run(tmp_path, None)
    assert "5 skipped" in out and "failed" not in out, out


def test_every_skip_fails_on_ci(tmp_path: Path) -> None:
    out = _run(tmp_path, "true")
    # a skipif mark acts in the setup phase, so pytest reports it as an error rather than a failure
    for outcome, name in (("FAILED", "test_skips"), ("FAILED", "test_importorskip"), ("ERROR", "test_skipif")):
        assert f"{outcome} test_sample.py::{name} - skipped on CI, where every test must run" in out, out
    assert "skipped on CI, where every test must run: no service here" in out
    assert "ERROR test_sample.py::test_realdata - Failed: " in out
    assert "realdata is only beside developer and CI checkouts" in out and "CI must run this test" in out
    assert "1 skipped" in out and "this machine has a GPU" in out, out


def test_skip_or_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no data"):
        skip_or_fail("no data")
    for value in ("true", "1", "yes"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.fail.Exception, match="no data. CI must run this test"):
            skip_or_fail("no data")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("no data")
