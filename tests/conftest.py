"""Dataset fixtures shared by several test modules."""

import pytest

import bayesmix as bmx


@pytest.fixture(scope="module")
def arabidopsis():
    """Arabidopsis as the nlme tutorial uses it: gen, rack and nutrient as factors."""
    data = bmx.load_dataset("Arabidopsis")
    for name in ("gen", "rack", "nutrient"):
        data[name] = data[name].astype("category")
    return data


@pytest.fixture(scope="module")
def theoph():
    return bmx.load_dataset("Theoph")


@pytest.fixture(scope="module")
def orange():
    return bmx.load_dataset("Orange")
