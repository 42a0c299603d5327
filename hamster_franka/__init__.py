"""The Franka robot adapter: franka_ros2 <-> the runtime's topics (franka_bridge), the RealSense cloud in the
base frame (camera_cloud), the pre-flight check before a first run, and the franka_msgs test stand-in."""
