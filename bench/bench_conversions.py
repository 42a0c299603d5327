"""Image / PointCloud2 <-> numpy conversion cost next to a plain memory copy and a naive per-element loop.

Budget: conversions within a small factor of a plain copy (README, "Reliability and timing"). Run:
    .venv/bin/python bench/bench_conversions.py
Prints the median and the minimum of repeated runs in milliseconds (the shared cores are noisy: the minimum
is the cost, the median what a busy machine adds), then one JSON line of ratios of minimum times: each
conversion against a plain copy of the bytes it reads or writes, and the naive loops against the conversions.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # stable timings on the shared cores

import json  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2, PointField  # noqa: E402

from hamster_ros.allocator import keep_large_buffers  # noqa: E402
from hamster_ros.conversions import (  # noqa: E402
    image_to_numpy, image_to_rgb, numpy_to_image, numpy_to_pointcloud2, pointcloud2_to_numpy,
)

WIDTH, HEIGHT, CLOUD_POINTS = 640, 480, 50_000
VGA_CLOUD_POINTS = 640 * 480  # a depth camera's full cloud: the per-message overhead no longer dominates


def timings_ms(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times)), 1e3 * min(times)


def report(title, rows):
    print(f"{title}\n  {'':38s} {'median ms':>10s} {'min ms':>10s}")
    for name, (median, minimum) in rows:
        print(f"  {name:38s} {median:10.3f} {minimum:10.3f}")


def naive_image_to_numpy(msg: Image) -> np.ndarray:
    """What a straightforward per-pixel Python conversion costs (the thing not to do)."""
    out = np.empty((msg.height, msg.width, 3), np.uint8)
    data = msg.data
    for row in range(msg.height):
        base = row * msg.step
        for column in range(msg.width):
            offset = base + 3 * column
            out[row, column] = (data[offset], data[offset + 1], data[offset + 2])
    return out


def naive_pointcloud2_to_numpy(msg: PointCloud2):
    raw = bytes(msg.data)
    points, colors = [], []
    for index in range(msg.width * msg.height):
        offset = index * msg.point_step
        x, y, z = struct.unpack_from("<fff", raw, offset)
        if x == x and y == y and z == z:  # finite check as written by hand
            (packed,) = struct.unpack_from("<I", raw, offset + 16)
            points.append((x, y, z))
            colors.append(((packed >> 16) & 255, (packed >> 8) & 255, packed & 255))
    return np.array(points, np.float32), np.array(colors, np.uint8)


def realsense_like_cloud(count: int) -> PointCloud2:
    """x, y, z float32, 4 padding bytes, rgb float32 at 16, point_step 32 (realsense2_camera's layout)."""
    rng = np.random.default_rng(0)
    layout = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4", "<f4", "<f4", "<u4"],
                       "offsets": [0, 4, 8, 16], "itemsize": 32})
    cloud = np.zeros(count, layout)
    for name in "xyz":
        cloud[name] = rng.normal(size=count)
    cloud["x"][::10] = np.nan  # a depth camera's missing returns
    cloud["rgb"] = rng.integers(0, 2 ** 24, size=count, dtype=np.uint32)
    fields = [PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
              for name, offset in (("x", 0), ("y", 4), ("z", 8), ("rgb", 16))]
    return PointCloud2(height=1, width=count, fields=fields, point_step=32, row_step=32 * count,
                       data=cloud.tobytes(), is_dense=False)


def cloud_timings(count: int, repeats: int) -> dict:
    cloud_msg = realsense_like_cloud(count)
    points, colors = pointcloud2_to_numpy(cloud_msg)
    raw = np.frombuffer(cloud_msg.data, np.uint8)
    out_raw = np.frombuffer(numpy_to_pointcloud2(points, colors).data, np.uint8)
    rows = dict([
        ("np.copy of the raw buffer (baseline)", timings_ms(lambda: np.copy(raw), 2 * repeats)),
        ("np.copy of the packed output (baseline)", timings_ms(lambda: np.copy(out_raw), 2 * repeats)),
        ("np.copy of (N, 3) float32 (baseline)", timings_ms(lambda: np.copy(points), 2 * repeats)),
        ("pointcloud2_to_numpy", timings_ms(lambda: pointcloud2_to_numpy(cloud_msg), repeats)),
        ("numpy_to_pointcloud2 with colors", timings_ms(lambda: numpy_to_pointcloud2(points, colors), repeats)),
    ])
    if count <= CLOUD_POINTS:
        rows["naive per-point struct loop"] = timings_ms(lambda: naive_pointcloud2_to_numpy(cloud_msg), 3)
    report(f"point cloud {count} points, point_step 32 with rgb ({len(raw) / 1e6:.2f} MB), "
           f"{len(points)} finite; packed output {len(out_raw) / 1e6:.2f} MB", list(rows.items()))
    return rows


def main():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    depth = rng.random((HEIGHT, WIDTH), dtype=np.float32)
    # What a process with glibc's default allocator pays (every node calls keep_large_buffers at start).
    glibc_default = {"numpy_to_image rgb8": timings_ms(lambda: numpy_to_image(rgb, "rgb8"), 100),
                     "numpy_to_image 32FC1 depth": timings_ms(lambda: numpy_to_image(depth, "32FC1"), 100)}
    report("glibc's default allocator (before keep_large_buffers)", list(glibc_default.items()))
    keep_large_buffers()

    rgb_msg = numpy_to_image(rgb, "rgb8")
    bgr_msg = numpy_to_image(rgb, "bgr8")
    depth_msg = numpy_to_image(depth, "32FC1")
    image_rows = dict([
        ("np.copy of the rgb array (baseline)", timings_ms(lambda: np.copy(rgb), 200)),
        ("np.copy of the depth array (baseline)", timings_ms(lambda: np.copy(depth), 200)),
        ("image_to_numpy (read-only view)", timings_ms(lambda: image_to_numpy(rgb_msg), 200)),
        ("image_to_numpy(copy=True)", timings_ms(lambda: image_to_numpy(rgb_msg, copy=True), 200)),
        ("image_to_rgb from bgr8", timings_ms(lambda: image_to_rgb(bgr_msg), 200)),
        ("numpy_to_image rgb8", timings_ms(lambda: numpy_to_image(rgb, "rgb8"), 200)),
        ("numpy_to_image 32FC1 depth", timings_ms(lambda: numpy_to_image(depth, "32FC1"), 200)),
        ("image_to_numpy(copy=True) 32FC1", timings_ms(lambda: image_to_numpy(depth_msg, copy=True), 200)),
        ("naive per-pixel Python loop", timings_ms(lambda: naive_image_to_numpy(rgb_msg), 1)),
    ])
    report(f"image {WIDTH}x{HEIGHT} rgb8 ({rgb.nbytes / 1e6:.2f} MB), depth 32FC1 ({depth.nbytes / 1e6:.2f} MB)",
           list(image_rows.items()))

    cloud_rows = cloud_timings(CLOUD_POINTS, repeats=100)
    vga_rows = cloud_timings(VGA_CLOUD_POINTS, repeats=30)

    # Ratios of minimum times, each conversion against a plain copy of the bytes it reads or writes.
    def ratio(row, baseline, rows):
        return round(rows[row][1] / rows[baseline][1], 2)
    summary = {
        "image_to_numpy_copy_vs_copy": ratio("image_to_numpy(copy=True)", "np.copy of the rgb array (baseline)",
                                             image_rows),
        "numpy_to_image_rgb8_vs_copy": ratio("numpy_to_image rgb8", "np.copy of the rgb array (baseline)",
                                             image_rows),
        "numpy_to_image_32FC1_vs_copy": ratio("numpy_to_image 32FC1 depth", "np.copy of the depth array (baseline)",
                                              image_rows),
        "numpy_to_image_32FC1_glibc_default_ms": round(glibc_default["numpy_to_image 32FC1 depth"][1], 3),
        "pointcloud2_to_numpy_vs_copy": ratio("pointcloud2_to_numpy", "np.copy of the raw buffer (baseline)",
                                              cloud_rows),
        "numpy_to_pointcloud2_vs_copy": ratio("numpy_to_pointcloud2 with colors",
                                              "np.copy of the packed output (baseline)", cloud_rows),
        "pointcloud2_to_numpy_vga_vs_copy": ratio("pointcloud2_to_numpy", "np.copy of the raw buffer (baseline)",
                                                  vga_rows),
        "numpy_to_pointcloud2_vga_vs_copy": ratio("numpy_to_pointcloud2 with colors",
                                                  "np.copy of the packed output (baseline)", vga_rows),
        "naive_image_vs_image_to_numpy_copy": ratio("naive per-pixel Python loop", "image_to_numpy(copy=True)",
                                                    image_rows),
        "naive_cloud_vs_pointcloud2_to_numpy": ratio("naive per-point struct loop", "pointcloud2_to_numpy",
                                                     cloud_rows),
        "pointcloud2_to_numpy_ms": round(cloud_rows["pointcloud2_to_numpy"][1], 3),
        "numpy_to_image_32FC1_ms": round(image_rows["numpy_to_image 32FC1 depth"][1], 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
