"""Headless Chromium for the browser tests (`/docs`, `/console`): find or install it, and drive it.

Two ways to use it:

- `render(chromium, url, profile, "--dump-dom")`: one page load, its DOM after scripts ran;
- `Browser(chromium, profile)`: a page driven over the DevTools protocol on a pipe
  (`--remote-debugging-pipe`: no port, no websocket library): navigate, run JavaScript, wait
  for a condition, type and click like a user, set the viewport, save screenshots.

Chromium is Debian's package (`apt-get install chromium`); the `chromium` fixture installs it
when missing and the tests run as root, and skips otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
APT_TIMEOUT_S = 600
BROWSER_TIMEOUT_S = 120
COMMAND_TIMEOUT_S = 30
# Quiet, offline Chromium: the machine's network is closed, so no background fetches at all.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
REPO_ROOT = Path(__file__).resolve().parents[2]
# Screenshots of the browser tests (gitignored); docs/console/ holds the few committed for the docs.
ARTIFACTS_DIR = Path(os.environ.get("TOKENLEDGER_ARTIFACTS_DIR", REPO_ROOT / "artifacts"))


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def install_chromium() -> str:
    """Debian's `chromium`, installed if missing and this user may (root with apt-get)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "chromium is not installed and apt-get is not available to this user"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(command)}` did not finish in {APT_TIMEOUT_S} s"
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"
    return "apt-get install chromium ran but no chromium binary is on PATH"


def chromium_or_skip() -> str:
    found = find_chromium()
    if found is None:
        reason = install_chromium()
        found = find_chromium()
        if found is None:
            pytest.skip(f"headless Chromium not available: {reason} (Debian: apt-get install -y chromium)")
    return found


def render(chromium: str, url: str, profile: Path, *extra: str) -> str:
    """The page's DOM after its scripts ran (virtual time lets the page fetch and render)."""
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000", *extra, url],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class BrowserError(AssertionError):
    """A DevTools command failed, a script threw, or a condition never came true."""


class Browser:
    """One Chromium page driven over the DevTools protocol (`--remote-debugging-pipe`)."""

    def __init__(self, chromium: str, profile: Path, *, width: int = 1200, height: int = 900) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Chromium reads commands on fd 3 and writes answers on fd 4; bash puts the pipes there. They
        # are moved to fds >= 10 first, so that neither already sits on 3 or 4 and gets overwritten.
        to_browser_r = self._high_fd(to_browser_r)
        from_browser_w = self._high_fd(from_browser_w)
        shell = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        profile.mkdir(parents=True, exist_ok=True)
        self.log_path = profile / "chromium.log"
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", shell, *command],
                pass_fds=(to_browser_r, from_browser_w),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self.errors: list[str] = []  # uncaught exceptions and console.error lines of the page
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Runtime.enable"):
            self.send(domain)
        self.viewport(width, height)

    @staticmethod
    def _high_fd(fd: int) -> int:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return moved

    # ------------------------------------------------------------ protocol
    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._answers[-1] = {"error": {"message": "the browser closed its pipe"}}
                    self._cond.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._answers[message["id"]] = message
                        self._cond.notify_all()
                else:
                    self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        params = message.get("params", {})
        if message.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.errors.append(f"exception: {text}")
        elif message.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = params.get("args", [])
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in args))

    def _call(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None) -> dict[str, Any]:
        with self._cond:
            self._next_id += 1
            call_id = self._next_id
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        with self._cond:
            while call_id not in self._answers and -1 not in self._answers:
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise BrowserError(f"{method}: no answer in {COMMAND_TIMEOUT_S} s")
            answer = self._answers.pop(call_id, None) or self._answers[-1]
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call(method, params, session=self.session)

    # ------------------------------------------------------------ page
    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait("document.readyState === 'complete'")

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression[:80]}: {details.get('exception', {}).get('description') or details}")
        return result.get("result", {}).get("value")

    def wait(self, condition: str, *, timeout_s: float = 15.0, what: str | None = None) -> Any:
        """Poll a JavaScript condition until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.js(
                f"(() => {{ try {{ const v = ({condition}); return v instanceof Node ? true : v; }}"
                " catch (e) { return null; } })()"
            )
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"waited {timeout_s} s for {what or condition}; page errors: {self.errors}")
            time.sleep(0.1)

    def text(self, selector: str) -> str:
        return str(self.wait(f"document.querySelector({json.dumps(selector)})?.innerText", what=selector))

    def fill(self, selector: str, value: str) -> None:
        """Type into a field as a user would (focus, value, input and change events)."""
        self.wait(f"document.querySelector({json.dumps(selector)})", what=selector)
        self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus();"
            f" e.value = {json.dumps(value)}; e.dispatchEvent(new Event('input', {{bubbles: true}}));"
            " e.dispatchEvent(new Event('change', {bubbles: true})); })()"
        )

    def click(self, selector: str) -> None:
        query = f"document.querySelector({json.dumps(selector)})"
        self.wait(f"{query} && !{query}.disabled && !{query}.hidden", what=selector)
        self.js(f"{query}.click()")

    def key(self, key: str, code: str | None = None, text: str | None = None) -> None:
        """Press a key on the focused element (keyboard navigation), e.g. key('Tab') or key('Enter', text='\\r')."""
        key_codes = {"Tab": 9, "Enter": 13, " ": 32}
        base = {"key": key, "code": code or key, "windowsVirtualKeyCode": key_codes.get(key, 0)}
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", **base, **({"text": text} if text else {})})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **base})

    def downloads_to(self, folder: Path) -> None:
        """Save the page's downloads (e.g. a statement) into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        self._call("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})

    def screenshot(self, name: str) -> Path:
        """A PNG of the whole page under ARTIFACTS_DIR."""
        path = ARTIFACTS_DIR / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            os.write(self._to_browser, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            for fd in (self._to_browser, self._from_browser):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
