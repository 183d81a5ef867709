"""Generator families and their registry. Importing this package registers every family.

A new family is one new file here plus one import line below; it then appears in
`available_generators()`, the CLI and the contract test suite.
"""

from netsynth.models import baselines, diffusion, gpt, ssm  # noqa: F401  (imports register the families)
from netsynth.models.base import (
    BaseConfig,
    Generator,
    available_generators,
    config_from_overrides,
    get_generator,
    load_generator,
)

__all__ = [
    "BaseConfig",
    "Generator",
    "available_generators",
    "config_from_overrides",
    "get_generator",
    "load_generator",
]
