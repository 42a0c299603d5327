"""Bag and dataset tools: recording episodes into rosbag2, loading an episode from a bag, replaying bags into
the graph, offline evaluation on recorded episodes, and demonstrations -> training samples."""
