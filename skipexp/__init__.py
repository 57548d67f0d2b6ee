"""skipexp: experiments on why skip connections let deep networks train.

From Python: ``skipexp.load``, ``skipexp.curves`` and ``skipexp.train`` (see :mod:`skipexp.api` and
docs/python-api.md). They load on first use, so that ``import skipexp`` and ``skipexp --help`` stay instant.
"""
from skipexp.core.version import VERSION as __version__  # noqa: F401 - the version, as packages name it

__all__ = ["load", "curves", "train"]

TYPE_CHECKING = False
if TYPE_CHECKING:  # for type checkers and editors; at run time the names load on first use
    from skipexp.api import curves, load, train


def __getattr__(name: str) -> object:
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("skipexp.api"), name)
    raise AttributeError(f"module 'skipexp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
