"""The web chat server behind `python -m medft.serve`.

A chat page on localhost for a trained run, so a run can be tried in a browser by people who
do not use a terminal. The standard library's HTTP server is enough for one local user and
adds no dependency; every reply goes through medft.serving.chat_session, as in medft.cli.chat.

The page keeps the conversation and sends it with each message, so the server holds no
per-user state and a restart loses nothing the page shows:

    POST /api/chat  {"history": [{"role": "user"|"assistant", "content": ...}, ...],
                     "message": "...", "stream": false}
      -> {"reply": "...", "new_tokens": n, "seconds": s, "dropped_turns": k}
    with "stream": true: one JSON object per line, {"text": ...} as the reply grows, then
      {"done": true, "reply": ..., ...} (or {"error": ...}).
    GET /api/info -> what is loaded, the system prompt and the disclaimer.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from medft.runtime.errors import ConfigError

PAGE = Path(__file__).resolve().parent / "static" / "chat.html"
DISCLAIMER = (
    "이 도우미의 답변은 일반적인 건강 정보이며 의학적 진단이나 처방이 아닙니다. "
    "진단과 치료는 반드시 의사의 확인을 받으세요. 응급 상황이면 즉시 119에 연락하세요."
)
MAX_BODY_BYTES = 1 << 20
MAX_MESSAGE_CHARS = 8000


class ChatServer(ThreadingHTTPServer):
    """The HTTP server plus what every request needs: the session template and one model lock."""

    daemon_threads = True

    def __init__(self, address, session, info: dict):
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.session = session
        self.info = info
        # One generation at a time: the model is shared and a second one would only halve the speed of both.
        self.lock = threading.Lock()
        self.page = PAGE.read_bytes()
        super().__init__(address, ChatHandler)
        self.allowed_hosts = _allowed_hosts(host, self.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _allowed_hosts(host: str, port: int) -> set[str] | None:
    """Host headers a loopback server answers (other names reach it only by DNS rebinding); None: any."""
    if not is_loopback(host):
        return None
    names = {"localhost", "127.0.0.1", "[::1]", f"[{host}]" if ":" in host else host}
    return {f"{name}:{port}" for name in names} | (names if port == 80 else set())


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer
    server_version = "medft"

    # ------------------------------------------------------------------ plumbing
    def log_request(self, code="-", size="-") -> None:
        """Only failed requests reach the terminal; a chat makes many successful ones."""
        if isinstance(code, int) and code >= 400:
            super().log_request(code, size)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _host_ok(self) -> bool:
        allowed = self.server.allowed_hosts
        if allowed is None or self.headers.get("Host", "") in allowed:
            return True
        self._json(
            HTTPStatus.MISDIRECTED_REQUEST,
            {"error": "unexpected Host header; open the URL medft.serve printed"},
        )
        return False

    # ------------------------------------------------------------------ routes
    def do_GET(self) -> None:
        if not self._host_ok():
            return
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif path == "/api/info":
            self._json(HTTPStatus.OK, self.server.info)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        if self.path.split("?", 1)[0] != "/api/chat":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path}"})
            return
        try:
            request = self._read_request()
            history, message, stream = self._parse(request)
        except ValueError as err:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(err)})
            return
        session = self.server.session.fork(history)
        if stream:
            self._reply_streaming(session, message)
        else:
            self._reply_whole(session, message)

    def _read_request(self) -> dict:
        # A JSON content type also makes a cross-site page's request need a CORS preflight, which fails here.
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            raise ValueError("send the request as JSON (Content-Type: application/json)")
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY_BYTES:
            raise ValueError(f"request body must be 1..{MAX_BODY_BYTES} bytes of JSON")
        try:
            request = json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"request body is not valid JSON: {err}") from None
        if not isinstance(request, dict):
            raise ValueError("request body must be a JSON object")
        return request

    @staticmethod
    def _parse(request: dict) -> tuple[list[dict], str, bool]:
        from medft.serving.chat_session import check_history

        message = request.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ValueError("message must be a non-empty string")
        if len(message) > MAX_MESSAGE_CHARS:
            raise ValueError(f"message is longer than {MAX_MESSAGE_CHARS} characters")
        history = check_history(request.get("history", []), MAX_MESSAGE_CHARS)
        return history, message, bool(request.get("stream", False))

    @staticmethod
    def _summary(session, result) -> dict:
        return {
            "reply": result.text,
            "new_tokens": result.new_tokens,
            "seconds": round(result.seconds, 3),
            "dropped_turns": session.dropped_turns,
        }

    def _reply_whole(self, session, message: str) -> None:
        try:
            with self.server.lock:
                result = session.reply(message)
        except Exception as err:  # the page shows it; the server keeps serving
            self.log_error("generation failed: %r", err)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"generation failed: {err}"})
            return
        self._json(HTTPStatus.OK, self._summary(session, result))

    def _reply_streaming(self, session, message: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.close_connection = True  # the body ends when the connection closes

        def line(payload: dict) -> None:
            self.wfile.write(json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n")
            self.wfile.flush()

        try:
            with self.server.lock:
                result = session.reply(message, on_text=lambda text: line({"text": text}))
            line({"done": True, **self._summary(session, result)})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page was closed mid-reply; nothing to tell it
        except Exception as err:
            self.log_error("generation failed: %r", err)
            try:
                line({"error": f"generation failed: {err}"})
            except OSError:
                pass


def make_server(session, host: str, port: int, info: dict) -> ChatServer:
    """Bind to host:port only; a busy port or an unknown host is the user's to fix, in one line."""
    try:
        return ChatServer((host, port), session, info)
    except socket.gaierror:
        raise ConfigError(f"chat.host={host} is not an address of this machine; use 127.0.0.1") from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"chat.port={port} is in use on {host}; choose another with chat.port=<n> (0: any free port)"
            ) from None
        if err.errno == errno.EACCES:
            raise ConfigError(f"chat.port={port} needs privileges to bind; use a port above 1023") from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"chat.host={host} is not an address of this machine; use 127.0.0.1") from None
        raise
