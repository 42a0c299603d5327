from hamster_core.policies.rvt2.configuration_rvt2 import RVT2Config
from hamster_core.policies.rvt2.modeling_rvt2 import RVT2Model, RVT2Policy

__all__ = ["RVT2Config", "RVT2Model", "RVT2Policy"]
