"""Methods are found by their module: one file is one method; a broken module or a name
registered twice is an error, never a silent skip."""

from __future__ import annotations

import sys

import pytest

import noisyseg.methods as methods_pkg
from noisyseg.methods import Method, available_methods, get_method_class, register
from noisyseg.methods import registry


@pytest.fixture
def extra_method_dir(tmp_path, monkeypatch):
    """A second folder of the methods package, and a registry that forgets what it learns."""
    monkeypatch.setattr(methods_pkg, "__path__", list(methods_pkg.__path__) + [str(tmp_path)])
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_SCANNED", False)
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("noisyseg.methods.toy")]:
        del sys.modules[name]


def test_every_method_module_is_found_without_a_list():
    names = available_methods()
    assert {"supervised", "clcs", "metadcseg", "gce", "sce", "coteaching", "trinet", "mtcl", "adele",
            "l2b"} <= set(names)
    for name in names:
        assert get_method_class(name).__module__.startswith("noisyseg.methods.")


def test_a_new_method_is_one_file(extra_method_dir):
    (extra_method_dir / "toy_method.py").write_text(
        "from noisyseg.methods import Method, register\n\n"
        "@register\nclass Toy(Method):\n    name = 'toy'\n")
    assert "toy" in available_methods()
    assert get_method_class("toy").__module__ == "noisyseg.methods.toy_method"


def test_a_module_that_fails_to_import_is_an_error(extra_method_dir):
    (extra_method_dir / "toy_broken.py").write_text("import a_package_that_does_not_exist\n")
    with pytest.raises(ImportError, match=r"noisyseg/methods/toy_broken\.py failed to import"):
        available_methods()


def test_a_name_registered_twice_is_an_error(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Twice(Method):
        name = "clcs"

    with pytest.raises(TypeError, match="method name 'clcs' registered twice"):
        register(Twice)
    assert get_method_class("clcs").__name__ != "Twice"
