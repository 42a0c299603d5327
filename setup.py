"""ament_python package of hamster_runtime; also installs with plain pip (see tools/setup.sh)."""
from glob import glob

from setuptools import Extension, find_packages, setup

PACKAGE = "hamster_runtime"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[f"{name}*" for name in (
        "hamster_core", "hamster_ros", "hamster_franka", "hamster_sim", "hamster_vlm_node", "perception_node",
        "policy_node", "hamster_bag", "hamster_apps")]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
        # the trained learned-policy checkpoints config/runtime.yaml defaults to (hamster_core.policies.learned)
        *[(f"share/{PACKAGE}/{folder}", glob(f"{folder}/*")) for folder in sorted(glob("checkpoints/*"))],
    ],
    # One fused C pass per point cloud (hamster_ros/conversions.py): numpy needs several passes (README, bench).
    ext_modules=[Extension("hamster_ros._cloud_kernels", ["hamster_ros/_cloud_kernels.c"],
                           extra_compile_args=["-O3", "-std=c11"])],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="hamster_runtime maintainers",
    description="Hierarchical language-conditioned manipulation runtime for the Franka arm over ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # nodes
            "hamster_vlm_node = hamster_vlm_node.node:main",
            "perception_node = perception_node.node:main",
            "policy_node = policy_node.node:main",
            "franka_bridge = hamster_franka.franka_bridge:main",
            "camera_cloud = hamster_franka.camera_cloud:main",
            "sim_node = hamster_sim.sim_node:main",
            # applications
            "hamster-run = hamster_apps.runner:main",
            "hamster-demo = hamster_apps.demo:main",
            "hamster-plan = hamster_apps.plan:main",
            "hamster-perceive = hamster_apps.perceive:main",
            "hamster-preflight = hamster_franka.preflight:main",
            "hamster-record-demonstrations = hamster_apps.record_demonstrations:main",
            "hamster-train = hamster_apps.train:main",
            "hamster-dataset = hamster_apps.dataset:main",
            "hamster-eval-sim = hamster_apps.eval_sim:main",
            "hamster-replay = hamster_bag.replay:main",
            "hamster-replay-eval = hamster_bag.replay_eval:main",
        ],
        # Plug-ins, one group per kind (hamster_core.registry): name = module that registers it on import.
        # A lab's package adds its own entries to these groups; no node package names them.
        "hamster_runtime.policies": [
            "path_follower = hamster_core.policies.path_follower",
            "rvt2 = hamster_core.policies.rvt2",
            "3dda = hamster_core.policies.dda",
        ],
        "hamster_runtime.vlm_backends": [
            "openai = hamster_vlm_node.backends.openai_compatible",
            "transformers = hamster_vlm_node.backends.transformers_vlm",
            "oracle = hamster_sim.oracle_vlm",
        ],
        "hamster_runtime.perception_backends": [
            "pipeline = perception_node.backends.pipeline",
            "sim_ground_truth = hamster_sim.ground_truth_perception",
        ],
        "hamster_runtime.detectors": [
            "grounding_dino = perception_node.detectors",
            "owlv2 = perception_node.detectors",
            "sam3 = perception_node.detectors",
            "sim_ground_truth = hamster_sim.ground_truth_perception",
        ],
        "hamster_runtime.segmenters": [f"{name} = perception_node.segmenters"
                                       for name in ("box", "sam", "sam2", "segment_anything")],
        "hamster_runtime.trackers": [*(f"{name} = perception_node.trackers"
                                       for name in ("template", "csrt", "kcf", "mil")),
                                     "sam2_video = perception_node.video_trackers"],
    },
)
