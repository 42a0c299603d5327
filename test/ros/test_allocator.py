"""The allocator settings every node applies at start (hamster_ros.allocator)."""
import subprocess
import sys

import pytest

from hamster_ros.allocator import keep_large_buffers

FAULTS_PER_CONVERSION = r"""
import resource, sys
import numpy as np
from hamster_ros.allocator import keep_large_buffers
from hamster_ros.conversions import numpy_to_image
if sys.argv[1] == "keep":
    assert keep_large_buffers()
rgb = np.zeros((480, 640, 3), np.uint8)
depth = np.zeros((480, 640), np.float32)
for _ in range(5):  # warm up: the first buffers of each size are new to any allocator
    numpy_to_image(rgb, "rgb8"), numpy_to_image(depth, "32FC1")
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):  # a camera node alternates colour and depth images
    numpy_to_image(rgb, "rgb8"), numpy_to_image(depth, "32FC1")
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 100)
"""


def test_image_messages_reuse_heap_buffers_instead_of_faulting_in_new_pages():
    # Regression: with glibc's defaults every 640x480 image message faulted in ~420-570 fresh pages
    # (0.9-1.1 ms per numpy_to_image); a 1.2 MB buffer is 300 pages, so < 30 per call means reuse.
    run = subprocess.run([sys.executable, "-c", FAULTS_PER_CONVERSION, "keep"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) < 30


@pytest.mark.parametrize("mmap_threshold, trim_threshold", [(0, 1), (1, -5)])
def test_thresholds_must_be_positive(mmap_threshold, trim_threshold):
    with pytest.raises(ValueError, match="positive"):
        keep_large_buffers(mmap_threshold, trim_threshold)
