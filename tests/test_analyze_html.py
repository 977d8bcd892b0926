"""The HTML report rendered by a real headless Chromium: the chart is in the rendered DOM."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pg2edge.analyzers import analyze, render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"),
]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],  # type: ignore[list-item]
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_chromium_renders_the_chart(shop_dsn: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render(analyze(shop_dsn), "html"), encoding="utf-8")
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<svg class="chart"' in dom.stdout
    assert dom.stdout.count('class="bar reads"') == 8
    assert 'data-table="public.products" data-verdict="excellent"' in dom.stdout
    assert 'data-table="public.audit_logs" data-verdict="keep"' in dom.stdout
    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,900", page.as_uri())
    assert res.returncode == 0 and shot.stat().st_size > 10_000, res.stderr[-2000:]
