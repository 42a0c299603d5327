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

from hamster_core.vlm import VLM_BACKENDS, PromptedBackend, VlmError, VlmRequest

IMAGE_FORMATS = {"png": (".png", "image/png"), "jpeg": (".jpg", "image/jpeg")}
ERROR_EXCERPT_CHARS = 300


class _Retryable(VlmError):
    """A failure worth another try: no connection, a timeout, HTTP 5xx or 429."""


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
        raise VlmError(f"response has no choices[0].message.content: {_excerpt(json.dumps(body))}") from None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        if texts and all(isinstance(text, str) for text in texts):
            return "".join(texts)
    raise VlmError(f"response content is neither text nor a list of text parts: {_excerpt(json.dumps(content))}")


def _excerpt(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= ERROR_EXCERPT_CHARS else text[:ERROR_EXCERPT_CHARS] + "..."


@VLM_BACKENDS.register("openai")
class OpenAICompatibleBackend(PromptedBackend):
    def __init__(self, base_url: str = "http://127.0.0.1:8000", model: str = "HAMSTER_dev",
                 timeout_sec: float = 60.0, retries: int = 2, backoff_sec: float = 0.5, api_key_env: str = "",
                 image_format: str = "jpeg", jpeg_quality: int = 95, max_response_bytes: int = 1_000_000,
                 max_tokens: int = 128, temperature: float = 0.0, top_p: float = 0.95, num_beams: int = 1,
                 use_cache: bool = False, prompt_template: str = "", gripper_position: bool = False):
        super().__init__(prompt_template, gripper_position)
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
        for name, value in (("timeout_sec", timeout_sec), ("backoff_sec", backoff_sec),
                            ("temperature", temperature)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if timeout_sec <= 0:
            raise ValueError(f"timeout_sec must be > 0, got {timeout_sec!r}")
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
        payload = json.dumps(self.request_body(request)).encode("utf-8")
        started = time.monotonic()
        errors = []
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_sec * 2 ** (attempt - 1))
            try:
                text = answer_text(self._post(payload))
            except _Retryable as error:
                errors.append(str(error))
                continue
            except VlmError:
                self.last_call = {"requests": attempt + 1, "request_sec": time.monotonic() - started}
                raise
            self.last_call = {"requests": attempt + 1, "request_sec": time.monotonic() - started}
            return text
        self.last_call = {"requests": self.retries + 1, "request_sec": time.monotonic() - started}
        tries = f"{self.retries + 1} request{'s' if self.retries else ''}"
        raise VlmError(f"{self.model_id} failed after {tries}: {errors[-1]}")

    def _post(self, payload: bytes) -> dict:
        """One POST; the timeout bounds the whole exchange, not just each socket read."""
        deadline = time.monotonic() + self.timeout_sec
        connection_class = http.client.HTTPSConnection if self._url.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(self._url.hostname, self._url.port, timeout=self.timeout_sec)
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
                    raise _Retryable(f"timed out after {self.timeout_sec:g} s reading the response")
                sock.settimeout(remaining)
                chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise VlmError(f"response exceeds max_response_bytes={self.max_response_bytes}")
                chunks.append(chunk)
        except (socket.timeout, TimeoutError):
            raise _Retryable(f"timed out after {self.timeout_sec:g} s") from None
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
            message = _server_message(body) if body is not None else _excerpt(raw.decode("utf-8", "replace"))
            failure = f"HTTP {status} from {self.base_url}: {message}"
            if status >= 500 or status == 429:
                raise _Retryable(failure)
            raise VlmError(failure)
        if not isinstance(body, dict):
            raise VlmError(f"response is not a JSON object: {_excerpt(raw.decode('utf-8', 'replace'))}")
        return body


def _server_message(body) -> str:
    """The server's own words: HAMSTER's `{"error": "..."}` or OpenAI's `{"error": {"message": ...}}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "message" in error:
        error = error["message"]
    return _excerpt(error if error is not None else json.dumps(body))
