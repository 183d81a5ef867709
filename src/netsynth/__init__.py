"""netsynth: real captures in, class-conditioned synthetic flows out, judged against real traffic."""

from netsynth.errors import InputError, NetsynthError, NotFittedError

__version__ = "0.1.0"
__all__ = ["InputError", "NetsynthError", "NotFittedError", "__version__"]
