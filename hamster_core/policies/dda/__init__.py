from hamster_core.policies.dda.configuration_dda import DDAConfig
from hamster_core.policies.dda.modeling_dda import DDAModel, DDAPolicy

__all__ = ["DDAConfig", "DDAModel", "DDAPolicy"]
