"""A small transform buffer, ROS-free: what tf2's BufferCore does for a recorded bag.

Frames form a tree (each child has one parent, as in tf2). Static transforms (/tf_static) hold at any time;
dynamic ones (/tf) are kept per child with their stamps and interpolated at the lookup time (translation
linearly, rotation by slerp). A lookup walks both frames up to their common ancestor and chains the links.
Lookups outside a dynamic link's recorded span are refused beyond `max_extrapolation_ns` (tf2 refuses any
extrapolation; a bag's first camera frame may precede the first /tf message by a few ms, hence the tolerance).

Matrices are 4x4 homogeneous, `parent_from_child` (a point in the child frame -> the parent frame), which is
what a geometry_msgs/TransformStamped with header.frame_id = parent and child_frame_id = child describes.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

from hamster_core.camera import check_rigid_transform
from hamster_core.geometry import quaternion_to_matrix, slerp


class TransformError(ValueError):
    """No transform between two frames: unknown frame, disconnected trees, or a time outside the data."""


def transform_matrix(translation, rotation_xyzw) -> np.ndarray:
    """4x4 parent_from_child from a translation (3,) and a unit quaternion x, y, z, w."""
    quaternion = np.asarray(rotation_xyzw, dtype=float)
    norm = np.linalg.norm(quaternion)
    if quaternion.shape != (4,) or not np.isfinite(norm) or abs(norm - 1.0) > 1e-3:
        raise ValueError(f"rotation must be a unit quaternion x, y, z, w, got {rotation_xyzw!r}")
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix(quaternion / norm)
    matrix[:3, 3] = np.asarray(translation, dtype=float).reshape(3)
    return check_rigid_transform(matrix, "transform")


@dataclass
class _DynamicLink:
    parent: str
    stamps: list          # ns, sorted
    translations: list    # (3,) arrays
    rotations: list       # (4,) x, y, z, w


class TransformBuffer:
    """Static and dynamic transforms between named frames; `lookup(target, source, at_ns)`."""

    def __init__(self, max_extrapolation_ns: int = 100_000_000):
        if not isinstance(max_extrapolation_ns, int) or max_extrapolation_ns < 0:
            raise ValueError(f"max_extrapolation_ns must be a non-negative integer, got {max_extrapolation_ns!r}")
        self.max_extrapolation_ns = max_extrapolation_ns
        self._static: dict[str, tuple[str, np.ndarray]] = {}     # child -> (parent, parent_from_child)
        self._dynamic: dict[str, _DynamicLink] = {}

    def _check_parent(self, parent: str, child: str) -> None:
        if not parent or not child or parent == child:
            raise ValueError(f"a transform needs two different named frames, got {parent!r} -> {child!r}")
        known = self._static.get(child, (None,))[0] or getattr(self._dynamic.get(child), "parent", None)
        if known is not None and known != parent:
            raise ValueError(f"frame {child!r} already has parent {known!r}; a second parent {parent!r} would "
                             f"make the frames no tree (tf2 refuses this too)")

    def add_static(self, parent: str, child: str, translation, rotation_xyzw) -> None:
        """A transform that holds at every time; a later one for the same child replaces it (as /tf_static does)."""
        self._check_parent(parent, child)
        self._static[child] = (parent, transform_matrix(translation, rotation_xyzw))

    def add(self, parent: str, child: str, stamp_ns: int, translation, rotation_xyzw) -> None:
        """A dynamic transform at `stamp_ns`; messages may arrive out of order."""
        self._check_parent(parent, child)
        if child in self._static:
            raise ValueError(f"frame {child!r} is static (from {self._static[child][0]!r}); it cannot also be dynamic")
        transform_matrix(translation, rotation_xyzw)          # validates
        link = self._dynamic.setdefault(child, _DynamicLink(parent, [], [], []))
        index = bisect_left(link.stamps, int(stamp_ns))
        rotation = np.asarray(rotation_xyzw, float) / np.linalg.norm(rotation_xyzw)
        if index < len(link.stamps) and link.stamps[index] == int(stamp_ns):
            link.translations[index], link.rotations[index] = np.asarray(translation, float), rotation
            return
        link.stamps.insert(index, int(stamp_ns))
        link.translations.insert(index, np.asarray(translation, float).reshape(3))
        link.rotations.insert(index, rotation)

    @property
    def frames(self) -> list[str]:
        names = set(self._static) | set(self._dynamic)
        names |= {parent for parent, _ in self._static.values()} | {link.parent for link in self._dynamic.values()}
        return sorted(names)

    def _parent(self, frame: str) -> str | None:
        if frame in self._static:
            return self._static[frame][0]
        link = self._dynamic.get(frame)
        return link.parent if link else None

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while (parent := self._parent(chain[-1])) is not None:
            if parent in chain:
                raise TransformError(f"frames {' -> '.join(chain + [parent])} form a loop")
            chain.append(parent)
        return chain

    def _link(self, child: str, at_ns: int | None) -> tuple[np.ndarray, bool]:
        """parent_from_child of one link at `at_ns` and whether it is dynamic."""
        if child in self._static:
            return self._static[child][1], False
        link = self._dynamic[child]
        stamps = link.stamps
        if at_ns is None:
            raise TransformError(f"{link.parent} -> {child} is only on /tf (dynamic): a lookup time is needed")
        if at_ns < stamps[0] - self.max_extrapolation_ns or at_ns > stamps[-1] + self.max_extrapolation_ns:
            raise TransformError(f"{link.parent} -> {child} is known from {stamps[0]} to {stamps[-1]} ns, not at "
                                 f"{at_ns} ns (more than {self.max_extrapolation_ns * 1e-6:g} ms outside)")
        index = bisect_left(stamps, at_ns)
        if index == 0 or index == len(stamps):
            nearest = 0 if index == 0 else len(stamps) - 1
            translation, rotation = link.translations[nearest], link.rotations[nearest]
        else:
            before, after = stamps[index - 1], stamps[index]
            fraction = (at_ns - before) / (after - before)
            translation = (1 - fraction) * link.translations[index - 1] + fraction * link.translations[index]
            rotation = slerp(link.rotations[index - 1], link.rotations[index], fraction)
        return transform_matrix(translation, rotation), True

    def lookup(self, target: str, source: str, at_ns: int | None = None) -> tuple[np.ndarray, bool]:
        """(target_from_source 4x4, whether any dynamic link was used). A point p in `source` is
        matrix @ p in `target`. TransformError names the frames when there is no connection."""
        known = set(self.frames)
        missing = [name for name in (target, source) if name not in known]
        if missing and target != source:
            raise TransformError(f"frame(s) {', '.join(repr(m) for m in missing)} not in the transforms; known "
                                 f"frames: {', '.join(sorted(known)) or 'none'}")
        source_chain, target_chain = self._chain(source), self._chain(target)
        common = next((frame for frame in source_chain if frame in target_chain), None)
        if common is None:
            raise TransformError(f"no transform between {target!r} and {source!r}: their trees are not connected "
                                 f"({' -> '.join(source_chain)}; {' -> '.join(target_chain)})")
        dynamic = False

        def up_to_common(chain: list[str]) -> np.ndarray:
            nonlocal dynamic
            matrix = np.eye(4)
            for child in chain[:chain.index(common)]:
                link, is_dynamic = self._link(child, at_ns)
                matrix = link @ matrix
                dynamic |= is_dynamic
            return matrix

        common_from_source = up_to_common(source_chain)
        common_from_target = up_to_common(target_chain)
        return np.linalg.inv(common_from_target) @ common_from_source, dynamic
