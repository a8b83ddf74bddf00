"""The README's Python example runs as printed."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_readme_example_runs(tmp_path):
    p = str(tmp_path / "data.kv")
    out = subprocess.run([sys.executable, os.path.join(HERE, "example.py"), p],
                         check=True, capture_output=True, text=True).stdout
    assert out == "1 3 [b'a', b'b'] 6 []\n"
    out = subprocess.run([sys.executable, os.path.join(HERE, "example.py"), p],
                         check=True, capture_output=True, text=True).stdout
    assert out.startswith("2 3 ")


def test_readme_carries_the_example():
    readme = os.path.join(os.environ.get("KVSTORE_SOURCE_DIR", os.path.join(HERE, "..", "..")), "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    with open(os.path.join(HERE, "example.py"), encoding="utf-8") as f:
        body = f.read().split("\nimport kvstore\n", 1)[1]
    assert body.strip() in text, "README.md's Python example differs from python/tests/example.py"


def test_readme_carries_the_c_example():
    src = os.environ.get("KVSTORE_SOURCE_DIR", os.path.join(HERE, "..", ".."))
    with open(os.path.join(src, "README.md"), encoding="utf-8") as f:
        text = f.read()
    with open(os.path.join(src, "tests", "install", "consumer", "example.c"), encoding="utf-8") as f:
        body = f.read().split("*/\n", 1)[1]
    assert body.strip() in text, "README.md's C example differs from tests/install/consumer/example.c"
