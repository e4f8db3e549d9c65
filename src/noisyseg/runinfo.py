"""Run records: the package versions written beside every result (run_info.json,
checkpoints, noise_summary.json, benchmark and demo summaries)."""

from __future__ import annotations

import platform
import sys


def package_versions() -> dict[str, str]:
    """Versions recorded beside every result: noisyseg, python, torch, monai, numpy, platform."""
    import monai
    import numpy
    import torch

    from . import __version__

    return {
        "noisyseg": __version__,
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
        "monai": str(monai.__version__),
        "numpy": str(numpy.__version__),
        "platform": platform.platform(),
    }
