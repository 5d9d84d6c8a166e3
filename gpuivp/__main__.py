"""``python -m gpuivp`` (and the ``gpuivp`` console script): see :mod:`gpuivp._cli`."""
import sys

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
