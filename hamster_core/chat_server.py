"""A small OpenAI-compatible chat server that behaves like HAMSTER's released VILA server, for tests, benchmarks
and the simulator demo. Stdlib only.

Like HAMSTER's server it serves `POST /chat/completions` (no `/v1`), refuses a `model` other than its own,
answers `choices[0].message.content` as a list of `{"type": "text", "text": ...}` parts without finish_reason
or usage, and reports every error as HTTP 500 with `{"error": "..."}`. What it answers comes from a pluggable
function of the decoded request; that function may raise `ChatServerError` (any status) or return a
`RawReply` to send exactly the bytes a test wants (a slow, oversized or malformed response).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import cv2
import numpy as np

MAX_REQUEST_BYTES = 50_000_000
_DATA_URL = re.compile(r"data:image/(?:png|jpeg|jpg|webp);base64,(?P<data>.*)", re.DOTALL)
_QUEST = re.compile(r"<quest>(?P<instruction>.*?)</quest>", re.DOTALL)


@dataclass
class ChatRequest:
    body: dict                       # the request JSON as sent
    prompt: str                      # the text parts of the last user message, joined
    image: np.ndarray | None         # the first image part, decoded to (H, W, 3) uint8 RGB
    headers: dict[str, str]

    @property
    def instruction(self) -> str | None:
        """The instruction inside HAMSTER's `<quest>...</quest>`, if the prompt has one."""
        match = _QUEST.search(self.prompt)
        return match.group("instruction").strip() if match else None


@dataclass
class RawReply:
    status: int = 200
    body: bytes = b""
    delay_sec: float = 0.0           # before the headers are sent
    content_type: str = "application/json"


class ChatServerError(Exception):
    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status


@dataclass
class ServedRequest:
    """What the server saw and how long it took to answer (for tests and the benchmark)."""
    headers: dict[str, str]
    model: str | None
    status: int
    handling_sec: float
    body: dict | None = field(default=None, repr=False)


def completion(text: str, model: str, content_as_list: bool = True) -> dict:
    """A chat-completions response the way HAMSTER's server writes it (or with string content)."""
    content = [{"type": "text", "text": text}] if content_as_list else text
    return {"id": f"chatcmpl-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


def decode_request(body: dict, headers: dict[str, str]) -> ChatRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        raise ChatServerError("messages must be a non-empty list")
    content = messages[-1].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise ChatServerError("message content must be a string or a list of parts")
    texts, image = [], None
    for part in parts:
        if not isinstance(part, dict):
            raise ChatServerError("content parts must be objects")
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "image_url" and image is None:
            url = (part.get("image_url") or {}).get("url", "") if isinstance(part.get("image_url"), dict) else ""
            match = _DATA_URL.fullmatch(url)
            if match is None:
                raise ChatServerError("image_url must be a base64 PNG or JPEG data URL")
            try:
                encoded = np.frombuffer(base64.b64decode(match.group("data"), validate=True), np.uint8)
            except (binascii.Error, ValueError):
                raise ChatServerError("image_url holds invalid base64") from None
            decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
            if decoded is None:
                raise ChatServerError("image_url is not a decodable image")
            image = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return ChatRequest(body=body, prompt="\n".join(texts), image=image, headers=headers)


class ChatServer:
    """`with ChatServer(answer, model="m") as server:` serves on `server.base_url` from a daemon thread.

    `answer(request: ChatRequest)` returns the answer text, a RawReply, or raises ChatServerError."""

    def __init__(self, answer: Callable[[ChatRequest], "str | RawReply"], model: str = "hamster-test",
                 host: str = "127.0.0.1", port: int = 0, content_as_list: bool = True):
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {port!r}")
        self.answer, self.model, self.content_as_list = answer, model, content_as_list
        self.served: list[ServedRequest] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: tests and the demo log what matters themselves
                pass

            def do_POST(self):
                server._handle(self)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "ChatServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="chat-server",
                                        daemon=True)  # a short poll: stop() returns quickly
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        headers = dict(handler.headers.items())
        body, model = None, None
        try:
            if handler.path.rstrip("/") != "/chat/completions":
                raise ChatServerError(f"no route {handler.path}", 404)
            length = int(handler.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_REQUEST_BYTES:
                raise ChatServerError(f"request body of {length} bytes")
            try:
                body = json.loads(handler.rfile.read(length))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise ChatServerError("request body is not JSON") from None
            if not isinstance(body, dict):
                raise ChatServerError("request body must be a JSON object")
            model = body.get("model")
            if model != self.model:
                raise ChatServerError(f"model {model!r} is not served here; this server runs {self.model!r}")
            reply = self.answer(decode_request(body, headers))
            if isinstance(reply, RawReply):
                time.sleep(reply.delay_sec)
                status, payload, content_type = reply.status, reply.body, reply.content_type
            elif isinstance(reply, str):
                status, content_type = 200, "application/json"
                payload = json.dumps(completion(reply, self.model, self.content_as_list)).encode()
            else:
                raise ChatServerError(f"the answer function returned {type(reply).__name__}")
        except ChatServerError as error:
            status, content_type = error.status, "application/json"
            payload = json.dumps({"error": str(error)}).encode()
        except Exception as error:  # HAMSTER's server turns every failure into a 500 with the message
            status, content_type = 500, "application/json"
            payload = json.dumps({"error": f"{type(error).__name__}: {error}"}).encode()
        # Recorded before answering, so a client that has its answer also finds its request here.
        with self._lock:
            self.served.append(ServedRequest(headers, model, status, time.monotonic() - started, body))
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the client gave up (e.g. its timeout): nothing to answer
