"""Optional capabilities the audit asks a method for, instead of testing its name."""

from __future__ import annotations

import torch

from noisyseg.methods import available_methods, get_method_class

from method_kit import random_batch, tiny_method


def test_label_thresholds_are_clcs_own_and_none_elsewhere():
    clcs = tiny_method("clcs")
    clcs.sigma.fill_(0.5)
    torch.testing.assert_close(clcs.label_thresholds(), clcs.thresholds())
    assert clcs.label_thresholds().shape == (3,)
    for name in available_methods():
        if name != "clcs":
            assert tiny_method(name).label_thresholds() is None, name


def test_label_weights_are_metadcseg_meta_weights():
    assert [n for n in available_methods() if get_method_class(n).has_label_weights()] == ["metadcseg"]
    method = tiny_method("metadcseg")
    b, meta = random_batch(seed=0), random_batch(seed=1)
    lw = method.label_weights(b["image"], b["label"], meta["image"], meta["label"])
    mw = method.compute_weights(b["image"], b["label"], meta["image"], meta["label"])
    torch.testing.assert_close(lw.given, mw.alpha)
    torch.testing.assert_close(lw.pseudo, mw.beta)
    assert torch.equal(lw.pseudo_label, mw.pseudo_label)
    assert tiny_method("supervised").label_weights(b["image"], b["label"], meta["image"], meta["label"]) is None
