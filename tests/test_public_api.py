"""The package exports its public API, and every exported error is under one root."""

import importlib
import subprocess
import sys

import pytest

import seccl_flwr


def test_every_exported_name_is_the_object_of_its_module():
    for name, module in seccl_flwr._EXPORTS.items():
        expected = getattr(importlib.import_module(f"seccl_flwr.{module}"), name)
        assert getattr(seccl_flwr, name) is expected, name
    assert set(seccl_flwr.__all__) == {"__version__", *seccl_flwr._EXPORTS}
    assert set(seccl_flwr.__all__) <= set(dir(seccl_flwr))


def test_star_import_gives_the_public_api():
    namespace: dict = {}
    exec("from seccl_flwr import *", namespace)
    assert namespace["SecCL"] is seccl_flwr.SecCL
    assert namespace["seccl_mod"] is seccl_flwr.seccl_mod


def test_every_exported_error_derives_from_the_one_root():
    errors = [
        getattr(seccl_flwr, name)
        for name in seccl_flwr.__all__
        if name.endswith("Error") and name != "SecCLError"
    ]
    assert len(errors) > 20
    for error in errors:
        assert issubclass(error, seccl_flwr.SecCLError), error


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'Krum'"):
        seccl_flwr.Krum  # noqa: B018


def test_importing_the_package_loads_neither_flower_nor_web3():
    code = "import sys, seccl_flwr; print(any(m in sys.modules for m in ('flwr', 'web3')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
