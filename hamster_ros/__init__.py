"""The thin ROS layer shared by the nodes: topic names and QoS, message <-> numpy conversions, the one
messages -> Observation conversion, node start-up and parameters, and rviz markers. Imports only the core and
messages (docs/architecture.md)."""
