"""The prompt a model is asked with: HAMSTER's released text byte for byte by default, the paper's as a name."""
import pytest

from hamster_core.answer_formats import PROMPT_TEMPLATES, resolve_prompt_template
from hamster_core.path2d import HAMSTER_PAPER_PROMPT_TEMPLATE, HAMSTER_PROMPT_TEMPLATE, build_prompt
from hamster_core.vlm import PromptedBackend

# Copied from github.com/liyi14/HAMSTER_beta, gradio_server_example.py, send_request() (commit
# 526a37f59f97c445005fcdf28f2cfb81ea742e4b): the text part of the request with quest = "{QUEST}".
RELEASED_PROMPT_FOR_QUEST = (
    "\nIn the image, please execute the command described in <quest>{QUEST}</quest>.\n"
    "Provide a sequence of points denoting the trajectory of a robot gripper to achieve the goal.\n"
    "Format your answer as a list of tuples enclosed by <ans> and </ans> tags. For example:\n"
    "<ans>[(0.25, 0.32), (0.32, 0.17), (0.13, 0.24), <action>Open Gripper</action>, (0.74, 0.21), <action>Close Gripper</action>, ...]</ans>\n"  # noqa: E501
    "The tuple denotes point x and y location of the end effector in the image. The action tags indicate gripper actions.\n"  # noqa: E501
    "Coordinates should be floats between 0 and 1, representing relative positions.\n"
    "Remember to provide points between <ans> and </ans> tags and think step by step."
)

# Figure 10 of the HAMSTER paper (arXiv 2502.05485), the wording the paper prints.
PAPER_PROMPT_FOR_QUEST = (
    "In the image, please execute the command described in <quest>{QUEST}</quest>.\n"
    "Provide a sequence of points denoting the trajectory of a robot gripper to achieve the goal.\n"
    "Format your answer as a list of tuples enclosed by <ans> and </ans> tags. For example:\n"
    "<ans>[(0.25, 0.32), (0.32, 0.17), (0.13, 0.24), <action>Open Gripper</action>, (0.74, 0.21), <action>Close Gripper</action>, ...]</ans>\n"  # noqa: E501
    "The tuple denotes the x and y location of the end effector of the gripper in the image. The action tags indicate the gripper action.\n"  # noqa: E501
    "The coordinates should be floats ranging between 0 and 1, indicating the relative locations of the points in the image."  # noqa: E501
)


def test_default_template_is_the_released_prompt_byte_for_byte():
    assert HAMSTER_PROMPT_TEMPLATE.encode() == RELEASED_PROMPT_FOR_QUEST.replace("{QUEST}", "{instruction}").encode()
    assert build_prompt("Move the S to the plate the arrow is pointing at") == \
        RELEASED_PROMPT_FOR_QUEST.replace("{QUEST}", "Move the S to the plate the arrow is pointing at")


def test_paper_wording_is_a_named_alternative():
    assert HAMSTER_PAPER_PROMPT_TEMPLATE == PAPER_PROMPT_FOR_QUEST.replace("{QUEST}", "{instruction}")
    assert PROMPT_TEMPLATES["hamster"] is HAMSTER_PROMPT_TEMPLATE
    assert resolve_prompt_template("hamster_paper") == HAMSTER_PAPER_PROMPT_TEMPLATE
    assert resolve_prompt_template("") == HAMSTER_PROMPT_TEMPLATE
    assert resolve_prompt_template("Task: {instruction}") == "Task: {instruction}"
    with pytest.raises(ValueError, match="hamster, hamster_paper.* or contain \\{instruction\\}"):
        resolve_prompt_template("hamster_papr")


def test_the_openai_backend_sends_the_released_prompt_as_the_released_client_does():
    import numpy as np

    from hamster_core.chat_server import ChatServer
    from hamster_core.vlm import VLM_BACKENDS, VlmRequest
    bodies = []
    with ChatServer(lambda chat: bodies.append(chat.body) or "<ans>[(0.5, 0.5)]</ans>", model="HAMSTER_dev") as server:
        backend = VLM_BACKENDS.create("openai", base_url=server.base_url, retries=0)
        backend.query(VlmRequest(image=np.zeros((48, 64, 3), np.uint8), instruction="open the top drawer"))
    # send_request(): one user message, the JPEG data URL first, then the text.
    (message,) = bodies[0]["messages"]
    image_part, text_part = message["content"]
    assert image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert text_part == {"type": "text", "text": RELEASED_PROMPT_FOR_QUEST.replace("{QUEST}", "open the top drawer")}


class _Prompted(PromptedBackend):
    def query(self, request):
        return ""


def test_a_prompted_backend_takes_a_template_by_name():
    assert _Prompted().prompt_template == HAMSTER_PROMPT_TEMPLATE
    assert _Prompted("hamster_paper").prompt_template == HAMSTER_PAPER_PROMPT_TEMPLATE
