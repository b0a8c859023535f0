"""A Telegram Bot API stand-in on 127.0.0.1, for testing alerts with the real python-telegram-bot over real HTTP.

It answers the methods alerts call (getMe, getChat, sendMessage, sendPhoto, sendAudio, sendDocument) with valid
Bot API JSON, records every request, and can be scripted to fail::

    with FakeBotApi() as api:                       # api.base_url -> Bot(token, base_url=api.base_url)
        api.fail_next(2, status=500)                # the next two requests get a 500
        api.rate_limit_next(1, retry_after=1)       # then a 429 asking to wait a second
        api.delay_next(1, 2.0)                      # then one answered 2 s late
        api.delay_s = 0.2                           # every request answers 0.2 s late
        api.hang = True                             # requests are never answered (until stop())
        ...
        api.wait_for(3)                             # until three sends were answered
        assert api.sent[0].text == "..."

A wrong token gets 401, an unknown chat 400 "chat not found", as from Telegram.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "123456789:AAFakeTestTokenThatMustNeverBeLogged_x1"
CHAT_ID = 4242
SEND_METHODS = ("sendMessage", "sendPhoto", "sendAudio", "sendDocument")


@dataclass
class ApiRequest:
    method: str
    fields: dict[str, str]
    files: dict[str, bytes]
    time: float  # time.monotonic() when the request arrived
    status: int = 0  # the HTTP status answered; 0 while unanswered

    @property
    def text(self) -> str | None:
        return self.fields.get("text", self.fields.get("caption"))


def _parse_body(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        fields, files = {}, {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if part.get_filename() is not None:
                files[name] = payload
            else:
                fields[name] = payload.decode()
        return fields, files
    parsed = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}, {}


class FakeBotApi:
    def __init__(self, token: str = TOKEN, chats: tuple[int, ...] = (CHAT_ID,)):
        self.token, self.chats = token, {str(chat) for chat in chats}
        self.requests: list[ApiRequest] = []
        self.delay_s = 0.0
        self.hang = False
        self._faults: deque[tuple[float, tuple[int, dict] | None]] = deque()  # (delay, answer or None: normal)
        self._lock = threading.Lock()
        self._release = threading.Event()  # set on stop(): hanging handlers return
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-bot-api",
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/bot"

    def start(self) -> FakeBotApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeBotApi:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next(self, n: int, status: int = 500) -> None:
        body = {"ok": False, "error_code": status, "description": "Internal Server Error"}
        self._faults.extend([(0.0, (status, body))] * n)

    def rate_limit_next(self, n: int, retry_after: int = 1) -> None:
        body = {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {retry_after}",
                "parameters": {"retry_after": retry_after}}
        self._faults.extend([(0.0, (429, body))] * n)

    def delay_next(self, n: int, seconds: float) -> None:
        """The next ``n`` requests are answered normally, ``seconds`` late (a client timeout shorter gives up)."""
        self._faults.extend([(seconds, None)] * n)

    @property
    def sent(self) -> list[ApiRequest]:
        """The send requests that were answered 200, in order."""
        with self._lock:
            return [r for r in self.requests if r.method in SEND_METHODS and r.status == 200]

    def calls(self, method: str) -> list[ApiRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    def wait_for(self, n: int, timeout_s: float = 10.0) -> list[ApiRequest]:
        """Waits until ``n`` sends were answered 200; returns them (fewer on timeout)."""
        deadline = time.monotonic() + timeout_s
        while len(self.sent) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.sent

    def answer(self, path: str, content_type: str, body: bytes, received: float) -> tuple[int, dict] | None:
        """The status and JSON for one request, or None to never answer."""
        token, _, method = path.removeprefix("/bot").partition("/")
        fields, files = _parse_body(content_type, body)
        request = ApiRequest(method, fields, files, time=received)
        with self._lock:
            self.requests.append(request)
            delay, scripted = self._faults.popleft() if self._faults else (0.0, None)
        if delay or self.delay_s:
            self._release.wait(delay or self.delay_s)
        if self.hang:
            self._release.wait()
            return None
        status, payload = scripted or self._result(token, method, fields)
        request.status = status
        return status, payload

    def _result(self, token: str, method: str, fields: dict[str, str]) -> tuple[int, dict]:
        if token != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": 123456789, "is_bot": True, "first_name": "Fake",
                                                "username": "fake_alerts_bot"}}
        if fields.get("chat_id") not in self.chats:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        chat = {"id": int(fields["chat_id"]), "type": "private", "first_name": "Tester"}
        if method == "getChat":
            gifts = {"unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False,
                     "premium_subscription": False, "gifts_from_channels": False}
            return 200, {"ok": True, "result": {**chat, "accent_color_id": 0, "max_reaction_count": 0,
                                                "accepted_gift_types": gifts}}
        if method in SEND_METHODS:
            with self._lock:
                message_id = len(self.requests)
            return 200, {"ok": True, "result": {"message_id": message_id, "date": int(time.time()), "chat": chat}}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Telegram's server

    def do_POST(self) -> None:
        received = time.monotonic()  # before the body: as close to the client's send as the server sees
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        answer = self.server.fake.answer(self.path, self.headers.get("Content-Type", ""), body, received)
        if answer is None:
            self.close_connection = True
            return
        status, payload = answer
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def log_message(self, format, *args) -> None:  # the request line carries the token: say nothing
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up on a slow or hanging answer
            self.close_connection = True
