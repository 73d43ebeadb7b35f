"""medft.serving.server on a tiny trained run: the JSON API answers, and the page works in headless Chromium.

The browser is driven over the Chrome DevTools protocol on a pipe (--remote-debugging-pipe), so
the test needs Debian's `chromium` and nothing from PyPI.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_chat import tiny_run  # noqa: F401  (the session's one trained run)

from medft.runtime.errors import ConfigError
from medft.serving.server import make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MESSAGE = "어제부터 머리가 아프고 열이 나요"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):  # noqa: F811
    """`python -m medft.serve` on a free port; yields its URL, killed afterwards whatever happens."""
    cwd = tmp_path_factory.mktemp("serve")
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "medft.serve",
        f"run={tiny_run}",
        f"chat.port={port}",
        "chat.max_new_tokens=8",
        "chat.temperature=0",
    ]
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("chat page on" in line for line in lines):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("medft.serving.server did not start:\n" + "".join(lines)[-3000:])
            time.sleep(0.1)
        url = next(line for line in lines if "chat page on" in line).split(" on ", 1)[1].split()[0]
        assert url == f"http://127.0.0.1:{port}/"
        yield url
    finally:
        proc.kill()
        proc.wait(10)
    assert not list(cwd.iterdir()), "no output dir, .hydra/ or log file"


def _post(url: str, payload: dict, content_type: str = "application/json"):
    request = urllib.request.Request(
        url + "api/chat",
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": content_type},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8")


def test_api_replies_with_and_without_streaming(server):
    status, body = _post(server, {"history": [], "message": MESSAGE})
    assert status == 200, body
    first = json.loads(body)
    assert first["reply"].strip() and first["new_tokens"] > 0

    history = [{"role": "user", "content": MESSAGE}, {"role": "assistant", "content": first["reply"]}]
    status, body = _post(server, {"history": history, "message": "병원에 가야 할까요?", "stream": True})
    assert status == 200, body
    events = [json.loads(line) for line in body.splitlines()]
    assert events[-1]["done"] is True and events[-1]["reply"].strip()
    assert "".join(e.get("text", "") for e in events[:-1]).strip() == events[-1]["reply"]

    assert _post(server, {"message": "  "})[0] == 400
    assert _post(server, {"message": "a", "history": [{"role": "assistant", "content": "b"}]})[0] == 400
    assert _post(server, {"message": "a"}, content_type="text/plain")[0] == 400
    with urllib.request.urlopen(server + "api/info", timeout=10) as response:
        info = json.loads(response.read())
    assert "tiny" in info["model"] and "의사" in info["disclaimer"]


def test_no_run_is_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "medft.serve", "chat.port=0"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "medft: error: nothing to chat with: give a training run with run=<dir> or a base model with model=<name>"
    ]
    assert not list(tmp_path.iterdir())


def test_busy_port_is_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ConfigError, match=f"chat.port={port} is in use"):
            make_server(None, "127.0.0.1", port, {})


class Chromium:
    """Headless Chromium driven by DevTools protocol messages over its debugging pipe."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-pipe",
        "--window-size=1000,800",
    )

    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="medft-chromium-")
        to_browser, self._in = os.pipe()
        self._out, from_browser = os.pipe()

        def pipe_fds():  # the protocol: the browser reads fd 3 and writes fd 4
            read_end = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        # close_fds would close 3 and 4 after pipe_fds; Python's own fds are not inherited anyway.
        self.proc = subprocess.Popen(
            [executable, *self.FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            preexec_fn=pipe_fds,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self.session = b"", 0, None

    def send(self, method: str, params: dict | None = None, timeout: float = 30, page: bool = True) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if page and self.session:
            message["sessionId"] = self.session
        os.write(self._in, json.dumps(message).encode("utf-8") + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {method}")
            if select.select([self._out], [], [], left)[0]:
                chunk = os.read(self._out, 1 << 16)
                if not chunk:
                    raise RuntimeError("the browser exited")
                self._buffer += chunk

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url}, page=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, page=False)[
            "sessionId"
        ]

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"page never satisfied: {expression}")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, as a user would make it."""
        x, y = self.js(
            f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close", page=False, timeout=5)
                self.proc.wait(5)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            pass  # killed below
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            os.close(self._in)
            os.close(self._out)
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_page_in_headless_chromium(server, tmp_path):
    browser = Chromium(CHROMIUM)
    try:
        browser.open(server)
        browser.wait_for("document.readyState === 'complete' && !!document.getElementById('send')")
        assert "의사" in browser.js("document.getElementById('disclaimer').innerText")
        browser.js("document.getElementById('message').focus()")
        browser.send("Input.insertText", {"text": MESSAGE})
        browser.click("#send")
        state = browser.wait_for(
            "(() => { const e = document.querySelector('.message.assistant');"
            " return e && e.dataset.state !== 'pending' && e.dataset.state; })()"
        )
        reply = browser.js("document.querySelector('.message.assistant .text').textContent")
        user = browser.js("document.querySelector('.message.user .text').textContent")
        browser.screenshot(tmp_path / "serve.png")
    finally:
        browser.close()
    shutil.copy(tmp_path / "serve.png", "/tmp/medft-serve.png")
    assert state == "done", reply
    assert user == MESSAGE
    assert reply.strip() and reply != "(빈 답변)"
    assert (tmp_path / "serve.png").read_bytes().startswith(b"\x89PNG")
