"""ament_python package of hamster_runtime; also installs with plain pip (see tools/setup.sh)."""
from glob import glob

from setuptools import Extension, find_packages, setup

PACKAGE = "hamster_runtime"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[
        "hamster_core", "hamster_core.*", "hamster_ros", "hamster_ros.*", "hamster_sim", "hamster_sim.*",
        "hamster_vlm_node", "hamster_vlm_node.*", "perception_node", "perception_node.*",
        "policy_node", "policy_node.*",
    ]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    # One fused C pass per point cloud (hamster_ros/conversions.py): numpy's floor is ~6x a memory copy.
    ext_modules=[Extension("hamster_ros._cloud_kernels", ["hamster_ros/_cloud_kernels.c"],
                           extra_compile_args=["-O3", "-std=c11"])],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="hamster_runtime maintainers",
    description="Hierarchical language-conditioned manipulation runtime for the Franka arm over ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_node = hamster_sim.sim_node:main",
            "hamster_vlm_node = hamster_vlm_node.node:main",
            "perception_node = perception_node.node:main",
            "policy_node = policy_node.node:main",
            "franka_bridge = hamster_ros.franka_bridge:main",
            "camera_cloud = hamster_ros.camera_cloud:main",
            "hamster-preflight = hamster_ros.preflight:main",
            "hamster-run = hamster_ros.runner:main",
            "hamster-demo = hamster_ros.demo:main",
            "hamster-plan = hamster_vlm_node.plan_cli:main",
            "hamster-perceive = perception_node.perceive_cli:main",
            "hamster-replay = hamster_ros.replay:main",
            "hamster-replay-eval = hamster_ros.replay_eval:main",
            "hamster-record-demos = hamster_ros.record_demos:main",
            "hamster-train = hamster_ros.train_cli:main",
            "hamster-eval-sim = hamster_sim.eval_sim:main",
        ],
    },
)
