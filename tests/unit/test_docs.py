"""The prose spec cannot drift from the code: every ``>>>`` example in ``docs/*.md`` runs here."""

import doctest
from pathlib import Path

import pytest

DOCS = sorted(p for p in (Path(__file__).parents[2] / "docs").glob("*.md") if ">>> " in p.read_text())


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_doc_examples(path):
    result = doctest.testfile(str(path), module_relative=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                              raise_on_error=False, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} example(s) in {path.name} disagree with the model"
