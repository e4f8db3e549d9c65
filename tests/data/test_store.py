"""Memory-mapped training cases: compact labels, the same batches as in-memory cases."""

from __future__ import annotations

import numpy as np
import torch

from noisyseg.data.case import Case
from noisyseg.data.sampling import PatchSampler
from noisyseg.data.store import CaseStore, compact_label, in_memory


def _case(i: int, k: int = 3) -> Case:
    rng = np.random.default_rng(i)
    lab = rng.integers(0, k, size=(20, 18, 12)).astype(np.int64)
    return Case(f"c{i}", rng.normal(size=(2, 20, 18, 12)).astype(np.float32), lab, (1.0, 1.0, 2.0), np.eye(4),
                None, clean_label=np.roll(lab, 1, axis=0))


def test_labels_take_the_smallest_unsigned_type():
    assert compact_label(np.array([0, 3, 255])).dtype == np.uint8
    assert compact_label(np.array([0, 256])).dtype == np.uint16
    assert np.array_equal(compact_label(np.array([[0, 7], [300, 2]])), [[0, 7], [300, 2]])


def test_stored_cases_are_read_only_maps_with_the_same_values(tmp_path):
    src = [_case(i) for i in range(3)]
    with CaseStore(tmp_path) as store:
        cases = [store.put(c) for c in src]
        root = store.root
    assert not root.exists()  # removed at once; the maps stay valid
    for a, b in zip(src, cases):
        assert isinstance(b.image, np.memmap) and not b.image.flags.writeable
        assert b.label.dtype == np.uint8 and b.clean_label.dtype == np.uint8
        assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
        assert np.array_equal(a.clean_label, b.clean_label)
        back = in_memory(b)
        assert back.label.dtype == np.int64 and not isinstance(back.image, np.memmap)


def test_mapped_cases_give_the_batches_of_in_memory_cases(tmp_path):
    src = [_case(i) for i in range(3)]
    with CaseStore(tmp_path) as store:
        mapped = [store.put(c) for c in src]
    kw = dict(patch_size=[16, 16, 8], batch_size=3, fg_oversample=0.5, augment=True, seed=4)
    a, b = PatchSampler(src, **kw), PatchSampler(mapped, **kw)
    for step in range(4):
        ba, bb = a.batch(step), b.batch(step)
        assert ba.keys() == bb.keys() == {"image", "label", "clean_label"}
        for k in ba:
            assert ba[k].dtype == bb[k].dtype and torch.equal(ba[k], bb[k]), (step, k)


def test_compact_labels_keep_the_ignore_index():
    from noisyseg.data.store import compact_label

    lab = np.array([[-1, 0], [3, 2]])
    out = compact_label(lab)
    assert out.dtype.kind == "i" and np.array_equal(out, lab)  # -1 must not wrap to 255
    assert compact_label(np.array([0, 3])).dtype == np.uint8
