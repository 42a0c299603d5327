"""The `openai` backend against a real local HTTP server that speaks HAMSTER's dialect (chat_server)."""
import json
import logging
import threading
import time

import numpy as np
import pytest

from hamster_core.camera import PinholeCamera, look_at
from hamster_core.geometry import TOP_DOWN, Pose
from hamster_core.path2d import HAMSTER_PROMPT_TEMPLATE, build_prompt
from hamster_core.vlm import VLM_BACKENDS, VlmError, VlmRequest, gripper_image_position
from hamster_core.chat_server import ChatServer, ChatServerError, RawReply

ANSWER = "<ans>[(0.25, 0.32), (0.32, 0.17), <action>Close Gripper</action>, (0.74, 0.21)]</ans>"
# Smooth colour ramps: JPEG keeps them close, so both encodings can be checked against the original.
_ROWS, _COLS = np.mgrid[0:48, 0:64]
IMAGE = np.stack([_COLS * 4, _ROWS * 5, 255 - _COLS * 2], axis=-1).astype(np.uint8)
MODEL = "HAMSTER_dev"


def request(**overrides):
    return VlmRequest(**{"image": IMAGE, "instruction": "put the corn in the bowl", **overrides})


def backend(server, **options):
    return VLM_BACKENDS.create("openai", **{"base_url": server.base_url, "model": MODEL, "retries": 0,
                                            "backoff_sec": 0.0, "timeout_sec": 5.0, **options})


@pytest.fixture
def serve():
    servers = []

    def start(answer, **kwargs):
        server = ChatServer(answer, model=kwargs.pop("model", MODEL), **kwargs).start()
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("content_as_list", [True, False])
def test_answer_comes_back_from_list_or_string_content(serve, content_as_list):
    seen = []

    def answer(chat):
        seen.append(chat)
        return ANSWER
    server = serve(answer, content_as_list=content_as_list)
    assert backend(server, image_format="png").query(request()) == ANSWER
    chat = seen[0]
    # HAMSTER's request: the image as a data URL, then the prompt; PNG arrives pixel-exact.
    np.testing.assert_array_equal(chat.image, IMAGE)
    assert chat.prompt == build_prompt("put the corn in the bowl")
    assert chat.instruction == "put the corn in the bowl"
    body = chat.body
    assert [part["type"] for part in body["messages"][0]["content"]] == ["image_url", "text"]
    assert body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert {key: body[key] for key in ("max_tokens", "temperature", "top_p", "num_beams", "use_cache")} == \
        {"max_tokens": 128, "temperature": 0.0, "top_p": 0.95, "num_beams": 1, "use_cache": False}
    assert server.served[0].headers.get("Authorization") is None


def test_jpeg_is_the_default_and_the_route_has_no_v1(serve):
    seen = []
    server = serve(lambda chat: seen.append(chat) or ANSWER)
    assert backend(server).query(request()) == ANSWER
    assert seen[0].body["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert np.abs(seen[0].image.astype(int) - IMAGE).mean() < 3  # lossy, but the same picture
    # A base URL with a path keeps it: <base>/chat/completions, whatever the base is.
    with pytest.raises(VlmError, match="HTTP 404.*no route /v1/chat/completions"):
        VLM_BACKENDS.create("openai", base_url=server.base_url + "/v1", model=MODEL, retries=0).query(request())


def test_prompt_template_and_gripper_line(serve):
    seen = []
    server = serve(lambda chat: seen.append(chat.prompt) or ANSWER)
    camera = PinholeCamera.from_fovy(64, 48, 60, look_at(np.array([1.3, 0.0, 0.9]), np.array([0.45, 0.0, 0.0])))
    tcp = Pose(np.array([0.45, 0.0, 0.0]), TOP_DOWN)  # the point the camera looks at: the image centre
    assert gripper_image_position(request(camera=camera, tcp_pose=tcp)) == pytest.approx((0.5, 0.5), abs=1e-6)
    backend(server, prompt_template="Task: {instruction}. Answer in <ans> tags {like: this}.",
            gripper_position=True).query(request(camera=camera, tcp_pose=tcp))
    assert seen[0] == ("Task: put the corn in the bowl. Answer in <ans> tags {like: this}.\n"
                       "The current position of the robot gripper is: (0.50, 0.50).")
    with pytest.raises(VlmError, match="needs the camera model"):
        backend(server, gripper_position=True).query(request())
    with pytest.raises(ValueError, match="contain \\{instruction\\}"):
        backend(server, prompt_template="no placeholder")
    assert backend(server, prompt_template="").prompt_template == HAMSTER_PROMPT_TEMPLATE


def test_wrong_model_name_is_the_servers_error_message(serve):
    server = serve(lambda chat: ANSWER, model="other-model")
    with pytest.raises(VlmError, match="HTTP 500 .*model 'HAMSTER_dev' is not served here; this server runs "
                                       "'other-model'"):
        backend(server).query(request())


@pytest.mark.parametrize("status", [502, 503, 504, 429])
def test_transient_statuses_are_retried_with_backoff_and_counted(serve, status):
    calls = []

    def flaky(chat):
        calls.append(chat)
        if len(calls) < 3:
            raise ChatServerError("overloaded, try later", status)
        return ANSWER
    server = serve(flaky)
    client = backend(server, retries=2, backoff_sec=0.01)
    assert client.query(request()) == ANSWER
    assert len(calls) == 3 and client.last_call["requests"] == 3
    calls.clear()
    client = backend(server, retries=1, backoff_sec=0.01)
    with pytest.raises(VlmError, match=f"failed after 2 requests: HTTP {status} .*overloaded"):
        client.query(request())
    assert len(calls) == 2


@pytest.mark.parametrize("status", [500, 400, 422])
def test_deterministic_errors_are_not_retried(serve, status):
    calls = []

    def broken(chat):
        calls.append(chat)
        raise ChatServerError("The endpoint is configured to use the model X", status)
    server = serve(broken)
    with pytest.raises(VlmError, match=f"HTTP {status} .*configured to use the model X"):
        backend(server, retries=5, backoff_sec=0.0).query(request())
    assert len(calls) == 1


def test_one_deadline_covers_all_retries(serve):
    release = threading.Event()
    server = serve(lambda chat: RawReply(200, b"{}") if release.wait(5) else ANSWER)
    # Six tries of 1 s would take 6 s; the deadline ends the query after 1.5 s, the second try cut to what is left.
    client = backend(server, timeout_sec=1.0, deadline_sec=1.5, retries=5, backoff_sec=0.0)
    started = time.monotonic()
    try:
        with pytest.raises(VlmError, match="no answer within deadline_sec=1.5 \\([12] requests?\\): timed out after"):
            client.query(request())
    finally:
        release.set()
    assert 1.5 <= time.monotonic() - started < 3.0 and client.last_call["requests"] <= 2


def test_a_404_says_which_route_the_server_family_uses(serve):
    server = serve(lambda chat: ANSWER)
    with pytest.raises(VlmError, match="HTTP 404 .*try base_url without /v1"):
        backend(server, base_url=server.base_url + "/v1").query(request())
    with pytest.raises(VlmError, match="HTTP 404 .*try base_url with /v1"):
        backend(server, base_url=server.base_url + "/api").query(request())


def test_unreachable_server_is_retried_then_reported():
    client = VLM_BACKENDS.create("openai", base_url="http://127.0.0.1:9", model=MODEL, retries=1, backoff_sec=0.0)
    with pytest.raises(VlmError, match="failed after 2 requests: cannot reach http://127.0.0.1:9"):
        client.query(request())
    assert client.last_call["requests"] == 2


def test_slow_response_hits_the_timeout(serve):
    release = threading.Event()
    server = serve(lambda chat: RawReply(200, b"{}", delay_sec=0.0) if release.wait(5) else ANSWER)
    client = backend(server, timeout_sec=0.3, retries=1, backoff_sec=0.0)
    try:
        with pytest.raises(VlmError, match="failed after 2 requests: timed out after 0.3 s"):
            client.query(request())
    finally:
        release.set()
    assert client.last_call["requests"] == 2


@pytest.mark.parametrize("reply, reason", [
    (RawReply(200, b"not json"), "not a JSON object"),
    (RawReply(200, b'{"choices": []}'), "no choices\\[0\\].message.content"),
    (RawReply(200, b'{"choices": [{"message": {"content": [{"type": "image"}]}}]}'), "neither text nor"),
    (RawReply(200, b'{"choices": [{"message": {"content": 7}}]}'), "neither text nor"),
    (RawReply(200, json.dumps({"choices": [{"message": {"content": "x" * 5000}}]}).encode()),
     "exceeds max_response_bytes=4000"),
    (RawReply(401, b'{"error": {"message": "invalid key"}}'), "HTTP 401 .*invalid key"),
])
def test_bad_responses_are_reported_not_retried(serve, reply, reason):
    calls = []
    server = serve(lambda chat: calls.append(1) or reply)
    with pytest.raises(VlmError, match=reason):
        backend(server, retries=3, max_response_bytes=4000).query(request())
    assert len(calls) == 1


def test_api_key_is_sent_as_bearer_but_never_shown(serve, monkeypatch, caplog):
    secret = "sk-test-1234567890-secret"
    monkeypatch.setenv("HAMSTER_TEST_KEY", secret)
    server = serve(lambda chat: ANSWER)
    with caplog.at_level(logging.DEBUG):
        client = backend(server, api_key_env="HAMSTER_TEST_KEY")
        assert client.query(request()) == ANSWER
    assert server.served[0].headers["Authorization"] == f"Bearer {secret}"
    shown = [client.model_id, repr(client), json.dumps(client.last_call), caplog.text]
    assert not any(secret in text for text in shown)
    # A failure message does not carry it either.
    with pytest.raises(VlmError) as error:
        VLM_BACKENDS.create("openai", base_url="http://127.0.0.1:9", model=MODEL, retries=0,
                            api_key_env="HAMSTER_TEST_KEY").query(request())
    assert secret not in str(error.value)
    monkeypatch.delenv("HAMSTER_TEST_KEY")
    with pytest.raises(ValueError, match="'HAMSTER_TEST_KEY', which is not set"):
        backend(server, api_key_env="HAMSTER_TEST_KEY")


@pytest.mark.parametrize("options, reason", [
    ({"base_url": "ftp://host"}, "base_url"),
    ({"base_url": "http://user:pw@host:8000"}, "credentials"),
    ({"base_url": "http://host:99999"}, "invalid port"),
    ({"base_url": "http://host/?q=1"}, "base_url"),
    ({"model": " "}, "model"),
    ({"timeout_sec": 0}, "timeout_sec"),
    ({"retries": -1}, "retries"),
    ({"retries": 1.5}, "retries"),
    ({"backoff_sec": float("nan")}, "backoff_sec"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"image_format": "gif"}, "image_format"),
    ({"jpeg_quality": 0}, "jpeg_quality"),
    ({"max_response_bytes": 0}, "max_response_bytes"),
    ({"use_cache": "yes"}, "use_cache"),
    ({"gripper_position": 1}, "gripper_position"),
])
def test_constructor_rejects_bad_options_by_name(options, reason):
    with pytest.raises(ValueError, match=reason):
        VLM_BACKENDS.create("openai", **options)


def test_model_id_names_model_and_server_only():
    client = VLM_BACKENDS.create("openai", base_url="http://10.0.0.5:8000/", model="HAMSTER_dev")
    assert client.model_id == "openai:HAMSTER_dev@http://10.0.0.5:8000"
