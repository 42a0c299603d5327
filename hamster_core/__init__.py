"""ROS-free core of hamster_runtime: paths, geometry, drawing, policies, execution and safety.

Nothing in this package imports rclpy or message types; the node packages convert messages to the
dataclasses and arrays defined here and back.
"""
