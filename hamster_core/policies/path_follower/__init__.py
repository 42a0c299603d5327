from hamster_core.policies.path_follower.configuration_path_follower import PathFollowerConfig
from hamster_core.policies.path_follower.modeling_path_follower import PathFollowerPolicy

__all__ = ["PathFollowerConfig", "PathFollowerPolicy"]
