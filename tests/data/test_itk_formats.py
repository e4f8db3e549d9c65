"""NRRD through the optional SimpleITK extra: read with the geometry of the NIfTI it came from,
written back readable, and a clear error naming the extra when SimpleITK is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from format_files import OBLIQUE, nifti

from noisyseg.errors import DataError
from noisyseg.io import list_case_files, read_file, write_label


def test_nrrd_reads_like_the_nifti_it_was_converted_from(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    arr = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    src = nifti(tmp_path / "a.nii.gz", arr, OBLIQUE)
    sitk.WriteImage(sitk.ReadImage(str(src)), str(tmp_path / "a.nrrd"))
    ref, got = read_file(src), read_file(tmp_path / "a.nrrd")
    assert np.array_equal(got.array, ref.array)
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-5)
    assert [p.name for p in list_case_files(tmp_path)] == ["a.nii.gz", "a.nrrd"]


def test_nrrd_label_round_trip_keeps_geometry(tmp_path):
    pytest.importorskip("SimpleITK")
    lab = np.zeros((6, 5, 4), np.uint8)
    lab[1:3, 2:4, 1] = 2
    write_label(tmp_path / "l.nrrd", lab, affine=OBLIQUE)
    back = read_file(tmp_path / "l.nrrd")
    assert np.array_equal(back.array, lab)
    np.testing.assert_allclose(back.affine, OBLIQUE, atol=1e-6)


def test_missing_simpleitk_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "a.nrrd").write_bytes(b"NRRD0004\n")
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # import fails as if not installed
    with pytest.raises(DataError, match=r"a\.nrrd.*pip install 'noisyseg\[itk\]'"):
        read_file(tmp_path / "a.nrrd")
