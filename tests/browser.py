"""A headless Chromium driven through the DevTools protocol, for the browser tests.

The system's Chromium (Debian's ``chromium``; `find_chromium`) is started with
``--remote-debugging-pipe``: protocol messages are JSON texts ended by a NUL byte, read by the
browser from its file descriptor 3 and written to 4, so no port, no websocket library and no
browser download are needed. Each `Page` is a tab attached with a flat session; it records what
a person would see in the console (errors, uncaught exceptions), every request it sent and every
request that failed.

>>> with Chromium(find_chromium(), profile) as browser:       # doctest: +SKIP
...     page = browser.new_page()
...     page.goto("file:///tmp/report.html")
...     page.evaluate("document.title")
...     page.problems()                                     # [] when nothing went wrong
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from srnas.results.report_images import CHROMIUM_NAMES

#: Flags that keep a test browser quiet and local: no first-run UI, no background requests to
#: Google's services, no name resolution for anything but loopback (nothing leaves the machine).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-component-extensions-with-background-pages",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
         "--metrics-recording-only", "--no-pings", "--mute-audio", "--hide-scrollbars",
         "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
         "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
         "--disable-backgrounding-occluded-windows", "--window-size=1280,900", "--remote-debugging-pipe")


#: Every <img> of a page: what it was asked to show, whether it decodes, its size, and the
#: `pixel_digest` of what it decoded to (drawn on a canvas).
_IMAGES_JS = """
Promise.all(Array.from(document.images).map(img => img.decode().then(() => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let digest = 0x811c9dc5;
  for (let i = 0; i < rgba.length; i++) {
    if ((i & 3) !== 3) digest = Math.imul(digest ^ rgba[i], 0x01000193) >>> 0;
  }
  return {ok: true, error: '', digest};
}, e => ({ok: false, error: String(e), digest: null})).then(r => ({
  ...r, alt: img.alt, src: (img.getAttribute('src') || '').slice(0, 60),
  width: img.naturalWidth, height: img.naturalHeight}))))
"""


def pixel_digest(png: bytes) -> int:
    """FNV-1a (32 bit) of an image's RGB bytes, row by row: what `Page.images` reports for the
    same picture decoded by the browser."""
    import io

    import numpy as np
    from PIL import Image

    digest = 0x811C9DC5
    for byte in np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).tobytes():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return digest


class BrowserError(RuntimeError):
    """The browser died, did not answer in time, or answered a command with an error."""


def find_chromium() -> str | None:
    """The first Chromium on PATH (the names `srnas report` looks for), or None."""
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


class Chromium:
    """One headless browser process; `close` (or the ``with`` block's end) ends it."""

    def __init__(self, executable: str, profile: Path, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        commands_r, self._commands = os.pipe()
        self._events, events_w = os.pipe()
        # The browser reads fd 3 and writes fd 4: the child's ends are copied above them first (not
        # inherited), then into place after the fork; every other descriptor closes at exec.
        child_in = fcntl.fcntl(commands_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(events_w, fcntl.F_DUPFD_CLOEXEC, 10)

        def pipes_as_3_and_4() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.log = profile / "chromium.log"
        profile.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={profile / 'profile'}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=False,
                preexec_fn=pipes_as_3_and_4)  # noqa: PLW1509 - two dup2 calls, safe after fork
        for fd in (commands_r, events_w, child_in, child_out):
            os.close(fd)
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()
        try:
            self.version = self.send("Browser.getVersion")["product"]
        except BrowserError:
            self.close()  # a browser that does not answer is not left running
            raise

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the protocol -----------------------------------------------------------------------

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._events, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))
        with self._lock:  # the browser is gone: wake every caller still waiting
            for answers in self._answers.values():
                answers.put({"error": {"message": "the browser closed its pipe"}})

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            with self._lock:
                answers = self._answers.get(message["id"])
            if answers is not None:
                answers.put(message)
            return
        page = self._pages.get(message.get("sessionId", ""))
        if page is not None:
            page._on_event(message["method"], message.get("params", {}))

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one command and wait for its result; an error answer raises `BrowserError`."""
        ident = next(self._ids)
        answers: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._answers[ident] = answers
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            with self._write_lock:
                os.write(self._commands, json.dumps(message).encode() + b"\0")
            answer = answers.get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise BrowserError(f"{method}: no answer within {timeout or self.timeout:.0f} s "
                               f"(browser log: {self.log})") from None
        except OSError as exc:
            raise BrowserError(f"{method}: the browser is gone ({exc}; browser log: {self.log})") from None
        finally:
            with self._lock:
                self._answers.pop(ident, None)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')} (browser log: {self.log})")
        return answer.get("result", {})

    # ---- pages ------------------------------------------------------------------------------

    def new_page(self, *, offline: bool = False) -> "Page":
        """A new tab with console, exception and network recording on; ``offline`` emulates a
        machine with no network (a page that needs one fails to load its parts)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        self._pages[session] = page
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        if offline:
            page.send("Network.emulateNetworkConditions",
                      {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        return page

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("Browser.close", timeout=5)
            except BrowserError:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        os.close(self._commands)
        self._reader.join(10)
        os.close(self._events)


class Page:
    """One tab. ``console_errors``, ``requests`` (every URL asked for) and ``failed_requests``
    fill in as the page runs; `problems` lists what a person would call broken."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self.failed_requests: list[str] = []
        self._urls: dict[str, str] = {}
        self._loaded = threading.Event()

    def send(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            self.console_errors.append("console.error: " + " ".join(
                str(a.get("value", a.get("description", a.get("type")))) for a in args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "exception")
            self.console_errors.append(f"uncaught: {text.splitlines()[0]} (line {details.get('lineNumber')})")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.console_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            self._urls[params["requestId"]] = url
            self.requests.append(url)
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = self._urls.get(params["requestId"], "?")
            self.failed_requests.append(f"{url}: {params.get('errorText')}{' (blocked)' if params.get('blockedReason') else ''}")
        elif method == "Network.responseReceived" and params["response"].get("status", 200) >= 400:
            response = params["response"]
            self.failed_requests.append(f"{response['url']}: HTTP {response['status']}")

    def goto(self, url: str, *, timeout: float = 60.0) -> None:
        """Open ``url`` and wait for its load event (scripts in the page have run)."""
        self._loaded.clear()
        answer = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if answer.get("errorText"):
            raise BrowserError(f"{url}: {answer['errorText']}")
        if not self._loaded.wait(timeout):
            raise BrowserError(f"{url}: not loaded within {timeout:.0f} s")

    def evaluate(self, expression: str, *, timeout: float | None = None) -> Any:
        """The value of a JavaScript expression in the page (promises awaited, JSON values only)."""
        answer = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise BrowserError(f"{expression[:80]}...: "
                               f"{details.get('exception', {}).get('description') or details.get('text')}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 45.0, interval: float = 0.2) -> Any:
        """Poll ``expression`` until it is truthy; its value, or `BrowserError` naming it."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"not true within {timeout:.0f} s: {expression}")
            time.sleep(interval)

    def images(self) -> list[dict[str, Any]]:
        """Each ``<img>`` in page order: ``alt``, ``src`` (cut at 60 characters), ``ok`` (it
        decodes) or ``error``, ``width`` and ``height`` as decoded, ``digest`` (`pixel_digest`)."""
        return self.evaluate(_IMAGES_JS)

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (not just the window), written to ``path``. The tab comes to the
        front first: Chromium may not paint a tab behind another, and the capture then waits."""
        self.send("Page.bringToFront")
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                         timeout=15)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and failed requests, in the order they came."""
        return [*self.console_errors, *(f"request failed: {r}" for r in self.failed_requests)]

    def close(self) -> None:
        self.browser._pages.pop(self.session, None)
        try:
            self.browser.send("Target.closeTarget", {"targetId": self.target}, timeout=5)
        except BrowserError:
            pass
