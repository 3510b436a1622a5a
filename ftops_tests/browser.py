"""Open a report page from a file in Debian's headless Chromium: the rendered DOM, console errors, screenshots.

Chromium's own console log (`--enable-logging=stderr`) prints every console message at the same
level, so an error cannot be told from a log line there. `load_page` therefore loads a copy of the
page with a small probe first in <head>: it records `console.error` calls, uncaught exceptions,
unhandled promise rejections and resources that failed to load, and writes them into the DOM, which
`--dump-dom` then returns. Uncaught errors that Chromium logs on stderr are added too.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ftops_tests.services import require_binary

ERRORS_ID = "ftops-console-errors"
_PROBE = """<script>(function(){
  var errors = [];
  function show(){
    var el = document.getElementById('%(id)s');
    if (!el) { el = document.createElement('pre'); el.id = '%(id)s'; el.hidden = true;
               (document.body || document.documentElement).appendChild(el); }
    el.textContent = JSON.stringify(errors);
  }
  function note(text){ errors.push(String(text)); if (document.body) show(); }
  var original = console.error;
  console.error = function(){ note(Array.prototype.map.call(arguments, String).join(' '));
                              return original.apply(console, arguments); };
  window.addEventListener('error', function(e){
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) note('failed to load ' + (t.src || t.href));
    else note('uncaught: ' + (e.message || e));
  }, true);
  window.addEventListener('unhandledrejection', function(e){ note('unhandled rejection: ' + e.reason); });
  document.addEventListener('DOMContentLoaded', show);
})();</script>""" % {"id": ERRORS_ID}
_BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
_UNCAUGHT = re.compile(r':CONSOLE[:(]\d*\)?\]? "(Uncaught [^"]*)"')


@dataclass(frozen=True)
class PageLoad:
    dom: str  # the DOM after the page's scripts ran (the probe's own element removed)
    console_errors: list[str]

    def count(self, marker: str) -> int:
        """How often `marker` (e.g. 'class="main-svg"') occurs in the rendered DOM."""
        return self.dom.count(marker)


def chromium() -> str:
    """The browser binary; skips the test when it is absent (fails on CI)."""
    return require_binary("chromium", "headless Chromium renders the HTML reports")


def _instrumented_copy(page: Path, tmp_path: Path) -> Path:
    text = page.read_text(encoding="utf-8")
    match = re.search(r"<head[^>]*>", text, flags=re.IGNORECASE)
    at = match.end() if match else 0
    copy = tmp_path / f"probed-{page.name}"
    copy.write_text(text[:at] + _PROBE + text[at:], encoding="utf-8")
    return copy


def load_page(path: str | Path, tmp_path: Path, *, budget_ms: int = 10000,
              window: tuple[int, int] = (1400, 3000)) -> PageLoad:
    """Load an HTML file in headless Chromium; the rendered DOM and every console error.

    The page is loaded as a copy in `tmp_path` (with the probe added), so a page that needs files
    beside it fails here: report pages must be self-contained.
    """
    copy = _instrumented_copy(Path(path).resolve(), tmp_path)
    result = subprocess.run(
        [chromium(), *_BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
         f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}",
         "--enable-logging=stderr", "--v=0", "--dump-dom", copy.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    errors: list[str] = []
    found = re.search(rf'<pre id="{ERRORS_ID}"[^>]*>(.*?)</pre>', dom, flags=re.DOTALL)
    if found is None:
        errors.append("the console probe did not run (scripts disabled or the page never loaded)")
    else:
        errors += json.loads(html.unescape(found.group(1)) or "[]")
        dom = dom[:found.start()] + dom[found.end():]
    errors += [m for m in _UNCAUGHT.findall(result.stderr) if not any(m.split(": ", 1)[-1] in e for e in errors)]
    return PageLoad(dom=dom, console_errors=errors)


def screenshot(path: str | Path, out_png: str | Path, window: tuple[int, int] = (1400, 3000),
               *, budget_ms: int = 10000) -> Path:
    """A PNG of the page (a file, or an http:// URL) as Chromium renders it at `window` (width, height) pixels."""
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ftops-chromium-") as profile:
        result = subprocess.run(
            [chromium(), *_BROWSER_FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
             f"--virtual-time-budget={budget_ms}", f"--screenshot={out_png}",
             str(path) if str(path).startswith(("http://", "https://")) else Path(path).resolve().as_uri()],
            capture_output=True, text=True, timeout=180,
        )
    assert result.returncode == 0 and out_png.is_file() and out_png.stat().st_size > 0, result.stderr[-2000:]
    return out_png
