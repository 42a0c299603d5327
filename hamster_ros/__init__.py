"""The thin ROS layer shared by the nodes: message conversions, QoS, the node graph, the process runner,
bag recording and the demo. Node logic lives in hamster_core and the node packages' plain modules."""
