"""`openai`: any OpenAI-compatible `/chat/completions` server, HAMSTER's released VILA server included.

HAMSTER's server differs from OpenAI's API in ways this client copes with: the route is `<base>/chat/completions`
with no `/v1` (so `base_url` is used verbatim, add `/v1` yourself for vLLM or OpenAI), it refuses a `model` other
than the one it loaded, it answers `choices[0].message.content` as a list of `{"type": "text", "text": ...}`
parts (a string is accepted too), it leaves out finish_reason and usage, and it reports errors as HTTP 500 with
`{"error": ...}`. Sampling fields it reads (`num_beams`, `use_cache`, `temperature`, `top_p`, `max_tokens`) are
sent at the top level of the request, where HAMSTER's client puts them through `extra_body`.

Plain http.client (no proxies from the environment, no extra dependency); one request at a time.
"""
from __future__ import annotations

import base64
import http.client
import json
import math
import os
import socket
import time
from urllib.parse import urlsplit

import cv2
import numpy as np

from hamster_core.vlm import VLM_BACKENDS, PromptedBackend, VlmError, VlmRequest, excerpt

IMAGE_FORMATS = {"png": (".png", "image/png"), "jpeg": (".jpg", "image/jpeg")}
# Statuses worth another try: a gateway or server that is down or overloaded for now, and rate limiting. A 500 is
# not among them: HAMSTER's server answers a wrong model name with it, which no retry can fix.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


class _Retryable(VlmError):
    """A failure worth another try: no connection, a timeout, HTTP 429/502/503/504."""


def encode_image_data_url(image_rgb: np.ndarray, image_format: str = "png", jpeg_quality: int = 95) -> str:
    """`data:image/...;base64,...` for an (H, W, 3) uint8 RGB image."""
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise VlmError(f"image must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    extension, mime = IMAGE_FORMATS[image_format]
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if image_format == "jpeg" else []
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise VlmError(f"could not encode the image as {image_format}")
    return f"data:{mime};base64,{base64.b64encode(encoded.tobytes()).decode('ascii')}"


def answer_text(body: dict) -> str:
    """The answer in a chat-completions response: `choices[0].message.content`, a string or a list of parts."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise VlmError(f"response has no choices[0].message.content: {excerpt(json.dumps(body))}") from None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        if texts and all(isinstance(text, str) for text in texts):
            return "".join(texts)
    raise VlmError(f"response content is neither text nor a list of text parts: {excerpt(json.dumps(content))}")


def _route_hint(route: str) -> str:
    """What a 404 on the chat route most likely means."""
    if route.endswith("/v1/chat/completions"):
        return " (HAMSTER's server answers at <base>/chat/completions: try base_url without /v1)"
    return " (vLLM and OpenAI answer at <base>/v1/chat/completions: try base_url with /v1)"


@VLM_BACKENDS.register("openai")
class OpenAICompatibleBackend(PromptedBackend):
    def __init__(self, base_url: str = "http://127.0.0.1:8000", model: str = "HAMSTER_dev",
                 timeout_sec: float = 60.0, deadline_sec: float = 120.0, retries: int = 2, backoff_sec: float = 0.5,
                 api_key_env: str = "",
                 image_format: str = "jpeg", jpeg_quality: int = 95, max_response_bytes: int = 1_000_000,
                 max_tokens: int = 128, temperature: float = 0.0, top_p: float = 0.95, num_beams: int = 1,
                 use_cache: bool = False, prompt_template: str = "", gripper_position: bool = False,
                 answer_format: str = "hamster"):
        super().__init__(prompt_template, gripper_position, answer_format)
        url = urlsplit(base_url) if isinstance(base_url, str) else None
        if url is None or url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise ValueError(f"base_url must be an http(s) URL without query or fragment, got {base_url!r}")
        if url.username or url.password:
            raise ValueError("base_url must not hold credentials: name an environment variable in api_key_env")
        try:
            url.port
        except ValueError:
            raise ValueError(f"base_url has an invalid port: {base_url!r}") from None
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        for name, value in (("timeout_sec", timeout_sec), ("deadline_sec", deadline_sec),
                            ("backoff_sec", backoff_sec), ("temperature", temperature)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name, value in (("timeout_sec", timeout_sec), ("deadline_sec", deadline_sec)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        for name, value, low in (("retries", retries, 0), ("max_tokens", max_tokens, 1), ("num_beams", num_beams, 1),
                                 ("max_response_bytes", max_response_bytes, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
        if not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be an integer in [1, 100], got {jpeg_quality!r}")
        if not isinstance(use_cache, bool):
            raise ValueError(f"use_cache must be a bool, got {use_cache!r}")
        self._api_key = None
        if api_key_env:
            self._api_key = os.environ.get(api_key_env)
            if not self._api_key:  # the name is safe to report, the value never is
                raise ValueError(f"api_key_env names {api_key_env!r}, which is not set in the environment")
        self.base_url = base_url.rstrip("/")
        self._url = url
        self._route = url.path.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout_sec = float(timeout_sec)
        self.deadline_sec = float(deadline_sec)
        self.retries = retries
        self.backoff_sec = float(backoff_sec)
        self.image_format, self.jpeg_quality = image_format, jpeg_quality
        self.max_response_bytes = max_response_bytes
        self.sampling = {"max_tokens": max_tokens, "temperature": float(temperature), "top_p": float(top_p),
                         "num_beams": num_beams, "use_cache": use_cache}
        self.model_id = f"openai:{model}@{self.base_url}"
        self.last_call: dict = {}

    def __repr__(self) -> str:
        return f"OpenAICompatibleBackend({self.model_id}, api_key={'set' if self._api_key else 'none'})"

    def request_body(self, request: VlmRequest) -> dict:
        data_url = encode_image_data_url(request.image, self.image_format, self.jpeg_quality)
        content = [{"type": "image_url", "image_url": {"url": data_url}},
                   {"type": "text", "text": self.prompt(request)}]
        return {"model": self.model, "messages": [{"role": "user", "content": content}], **self.sampling}

    def query(self, request: VlmRequest) -> str:
        """One answer, within deadline_sec in all: each request gets at most timeout_sec and what is left of the
        deadline; transient failures are retried (up to `retries` more requests) while time remains."""
        payload = json.dumps(self.request_body(request)).encode("utf-8")
        started = time.monotonic()
        deadline = started + self.deadline_sec
        errors = []
        requests = 0
        while requests <= self.retries:
            if requests:
                wait = self.backoff_sec * 2 ** (requests - 1)
                if time.monotonic() + wait >= deadline:
                    break
                time.sleep(wait)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            requests += 1
            try:
                text = answer_text(self._post(payload, min(self.timeout_sec, remaining)))
            except _Retryable as error:
                errors.append(str(error))
                continue
            except VlmError:
                self.last_call = {"requests": requests, "request_sec": time.monotonic() - started}
                raise
            self.last_call = {"requests": requests, "request_sec": time.monotonic() - started}
            return text
        self.last_call = {"requests": requests, "request_sec": time.monotonic() - started}
        tries = f"{requests} request{'s' if requests != 1 else ''}"
        if requests <= self.retries:  # retries left, but no time for them
            raise VlmError(f"{self.model_id} gave no answer within deadline_sec={self.deadline_sec:g} "
                           f"({tries}): {errors[-1] if errors else 'no time for a request'}")
        raise VlmError(f"{self.model_id} failed after {tries}: {errors[-1]}")

    def _post(self, payload: bytes, timeout: float) -> dict:
        """One POST; the timeout bounds the whole exchange, not just each socket read."""
        deadline = time.monotonic() + timeout
        connection_class = http.client.HTTPSConnection if self._url.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(self._url.hostname, self._url.port, timeout=timeout)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            connection.request("POST", self._route, body=payload, headers=headers)
            sock = connection.sock  # the response may take it over from the connection
            sock.settimeout(max(1e-3, deadline - time.monotonic()))
            response = connection.getresponse()
            declared = response.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_response_bytes:
                raise VlmError(f"response of {declared} bytes exceeds max_response_bytes={self.max_response_bytes}")
            chunks, size = [], 0
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Retryable(f"timed out after {timeout:.3g} s reading the response")
                sock.settimeout(remaining)
                chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise VlmError(f"response exceeds max_response_bytes={self.max_response_bytes}")
                chunks.append(chunk)
        except (socket.timeout, TimeoutError):
            raise _Retryable(f"timed out after {timeout:.3g} s") from None
        except (http.client.HTTPException, OSError) as error:
            raise _Retryable(f"cannot reach {self.base_url}: {type(error).__name__}: {error}") from None
        finally:
            connection.close()
        raw = b"".join(chunks)
        status = response.status
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if status != 200:
            message = _server_message(body) if body is not None else excerpt(raw.decode("utf-8", "replace"))
            failure = f"HTTP {status} from {self.base_url}: {message}"
            if status == 404:
                failure += _route_hint(self._route)
            if status in TRANSIENT_STATUSES:
                raise _Retryable(failure)
            raise VlmError(failure)
        if not isinstance(body, dict):
            raise VlmError(f"response is not a JSON object: {excerpt(raw.decode('utf-8', 'replace'))}")
        return body


def _server_message(body) -> str:
    """The server's own words: HAMSTER's `{"error": "..."}` or OpenAI's `{"error": {"message": ...}}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "message" in error:
        error = error["message"]
    return excerpt(error if error is not None else json.dumps(body))
