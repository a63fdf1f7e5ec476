"""Headless Chromium for checking the pages: screenshots, the rendered DOM and console messages.

The pages carry no scripts, so any console message (an uncaught error, a blocked resource) is a defect.
"""

import os
import re
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
)
_CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)")


class BrowserError(RuntimeError):
    """Chromium failed or timed out."""


def _run(page: Path, args: list[str], binary: str, timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args, Path(page).absolute().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                                  env={**os.environ, "LANG": "C.UTF-8"})
        except subprocess.TimeoutExpired:
            raise BrowserError(f"chromium did not finish within {timeout:g} s on {page}") from None
    if done.returncode != 0:
        raise BrowserError(f"chromium exited with {done.returncode} on {page}: {done.stderr[-2000:]}")
    return done


def console_messages(stderr: str) -> list[str]:
    """The page's console output (and uncaught errors) found in Chromium's log."""
    found = []
    for line in stderr.splitlines():
        match = _CONSOLE.search(line)
        if match or "Uncaught" in line:
            found.append(match.group(1) if match else line.strip())
    return found


def screenshot(page: str | os.PathLike[str], png: str | os.PathLike[str], width: int = 1280,
               height: int = 2000, binary: str = CHROMIUM, timeout: float = 60) -> list[str]:
    """Save a ``width`` x ``height`` screenshot of ``page`` to ``png``; return its console messages."""
    png = Path(png).absolute()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    done = _run(Path(page), [f"--screenshot={png}", f"--window-size={width},{height}"], binary, timeout)
    if not png.exists():
        raise BrowserError(f"chromium wrote no screenshot of {page}: {done.stderr[-2000:]}")
    return console_messages(done.stderr)


def dump_dom(page: str | os.PathLike[str], binary: str = CHROMIUM, timeout: float = 60,
             ) -> tuple[str, list[str]]:
    """The DOM of ``page`` after loading, serialized, and its console messages."""
    done = _run(Path(page), ["--dump-dom"], binary, timeout)
    return done.stdout, console_messages(done.stderr)
