"""metrics-bridge: poll third-party HTTP/JSON APIs on a schedule and serve the numbers as Prometheus metrics."""

__version__ = "0.1.0"

from .client import FetchError, FetchResult, TargetClient  # noqa: E402
from .config import Config, ConfigError, Target, load_config, parse_config  # noqa: E402
from .mapping import Mapper, MappingError, MapResult  # noqa: E402

__all__ = [
    "__version__",
    "Config",
    "ConfigError",
    "FetchError",
    "FetchResult",
    "Mapper",
    "MapResult",
    "MappingError",
    "Target",
    "TargetClient",
    "load_config",
    "parse_config",
]
