"""The `>>>` examples in the docstrings run, module by module (the API reference shows them).

`--doctest-modules` is not on for the whole package: a module joins DOCTESTED once its
examples run quickly and without files from outside the repository.
"""

import doctest
import importlib

import pytest

DOCTESTED = (
    "jaxtl.model.irreps",
    "jaxtl.model.config",
    "jaxtl.graph.neighbours",
    "jaxtl.heads",
    "jaxtl.datasets",
    "jaxtl.finetune.config",
    "jaxtl.distill.config",
)


@pytest.mark.parametrize("name", DOCTESTED)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(module, name, globs=vars(module).copy())
    assert sum(len(t.examples) for t in tests) > 0, f"{name} is listed but has no >>> examples"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
