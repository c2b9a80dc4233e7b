"""Weight statistics: tensor-by-tensor sources (:mod:`.source`), robust statistics (:mod:`.stats`)
and self-registering checks (:mod:`.checks`)."""
from .checks import CHECKS, WeightContext, run_checks, seed_tokens
from .source import GGUFSource, SafetensorsSource, WeightSource, open_source
from .stats import robust_z, valid_rows

__all__ = ["CHECKS", "WeightContext", "run_checks", "seed_tokens", "GGUFSource", "SafetensorsSource",
           "WeightSource", "open_source", "robust_z", "valid_rows"]
