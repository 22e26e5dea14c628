import os
from html.parser import HTMLParser

import pytest
import torch

# Tests are small; one thread keeps them fast and their results reproducible on shared 2-core machines.
torch.set_num_threads(1)


# Converting each test's throwaway generator to ONNX would take most of the suite's time:
# commands default to PyTorch here. The converted backends and `auto` are tested by name
# (tests/test_runner.py, the speed benchmark, the published styles through the CLI).
os.environ["TRANSFIGURE_BACKEND"] = "torch"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Downloads and converted models go to a folder of this session's, never the user's cache
    (tests that test the cache set their own)."""
    before = os.environ.get("TRANSFIGURE_CACHE")
    os.environ["TRANSFIGURE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        del os.environ["TRANSFIGURE_CACHE"]
    else:
        os.environ["TRANSFIGURE_CACHE"] = before


@pytest.fixture
def tiny_dataset(tmp_path_factory):
    """A small synthetic labels<->photo dataset (32 px), made once per test that asks."""
    from transfigure.data.synthetic import make_labels2photo

    root = tmp_path_factory.mktemp("synth") / "data"
    make_labels2photo(root, size=32, n_train=6, n_test=3, seed=0, progress=False)
    return root


class _ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture
def image_sources():
    """The src of every <img> in an HTML text (pages' images must all exist)."""
    def parse(html_text: str) -> list[str]:
        parser = _ImageSources()
        parser.feed(html_text)
        return parser.sources
    return parse


def pytest_terminal_summary(terminalreporter):
    """Say loudly when the published weights and photos were not there to test."""
    from shared_data import MISSING_SHARED, SHARED

    skipped = [r for r in terminalreporter.stats.get("skipped", []) if MISSING_SHARED in str(r.longrepr)]
    if skipped:
        terminalreporter.section("published weights NOT tested", sep="!", red=True, bold=True)
        terminalreporter.line(f"{len(skipped)} tests of the published CartoonGAN weights and real photos did not run: "
                              f"{SHARED} is missing. Set $TRANSFIGURE_SHARED to the shared folder.", red=True)
