"""Label noise made by trained models (``pseudo``, ``sfda``): above :mod:`noisyseg.api`, which
it trains and predicts with, so :mod:`noisyseg.noise` stays array code.

:func:`make_noisy_dataset` writes a noisy copy of a dataset for every protocol kind.
"""

from .dataset import make_noisy_dataset
from .labels import check_model_protocol_args, model_noisy_labels, pseudo_labels
from .sfda import adapt_entropy

__all__ = ["adapt_entropy", "check_model_protocol_args", "make_noisy_dataset", "model_noisy_labels", "pseudo_labels"]
