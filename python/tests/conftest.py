# The module under test is the build's (ctest puts build/python on PYTHONPATH).
import pytest


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "store.kv")
