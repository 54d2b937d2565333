"""How the suite is shared between pytest-xdist workers; scripts/test.sh loads it (``-p tests.xdist_plan``)
with ``--dist loadscope --no-loadscope-reorder`` when the machine has two cores or more.

Tests go to the workers in units (:func:`unit_of`), each unit on one worker, in order:

- A notebook's nbval cells run in one kernel, in order: one unit per notebook.
- The book build (tests/test_book.py) and the tests that read the built book (test_rendered, test_browser) are
  one unit: the book is built once, and no other test rebuilds it under their feet.
- Each chapter's smoke run is a unit of its own, so the chapters spread over the workers.
- Every other module is one unit, so a module's fixtures are made once.

Units start slowest first (the book, then the chapters' smoke runs and the slowest modules, then nbval, then the
rest), so that no worker is left with a long run at the end while the others wait. The units are made by a scheduler of our own rather than
with ``xdist_group`` marks, which pytest-xdist 3.8 adds to a test's id in a way pytest 9 no longer reads.
"""

from __future__ import annotations

import pytest

BOOK_MODULES = ("test_book.py", "test_rendered.py", "test_browser.py")
SMOKE_TEST = "test_chapter_runs_in_smoke_profile"
SLOW_MODULES = ("test_library.py", "test_colocalisation.py")  # the longest modules in a --durations run: 1-3 min


def unit_of(nodeid: str) -> tuple[str, int]:
    """The unit a test runs in and the unit's rank in the start order (0 starts first).

    Examples:
        >>> unit_of("tests/test_browser.py::test_live_page_says_why_it_cannot_run_from_a_file_address")
        ('book', 0)
        >>> unit_of("tests/test_chapters.py::test_chapter_runs_in_smoke_profile[addition]")
        ('smoke-addition', 1)
        >>> unit_of("tests/test_library.py::test_library_tests_pass_from_pip_install_alone")
        ('tests/test_library.py', 1)
        >>> unit_of("book/addition.ipynb::Cell 3")
        ('book/addition.ipynb', 2)
        >>> unit_of("tests/test_memo.py::test_bad_names_are_refused")
        ('tests/test_memo.py', 3)
        >>> unit_of("stnlib/io.py::stnlib.io.remove_stale_temporaries")
        ('stnlib/io.py', 3)
    """
    path, _, rest = nodeid.partition("::")
    name = path.rsplit("/", 1)[-1]
    if name in BOOK_MODULES:
        return "book", 0
    if name == "test_chapters.py" and rest.startswith(f"{SMOKE_TEST}[") and rest.endswith("]"):
        return f"smoke-{rest[len(SMOKE_TEST) + 1:-1]}", 1
    if name in SLOW_MODULES:
        return path, 1
    if path.endswith(".ipynb"):
        return path, 2
    return path, 3


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a worker: the collection in start order (the scheduler queues units in the order it receives them)."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: unit_of(item.nodeid)[1])  # stable: each unit keeps its own order


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """On the controller: ``--dist loadscope`` over the units of :func:`unit_of`."""
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)[0]

    return UnitScheduling(config, log)
