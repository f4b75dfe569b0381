"""Heavy imports run with the garbage collector off, and what they made is frozen out of its sight."""
import gc

import pytest

from chatvector.imports import heavy_imports


class Module:
    """Stands for what an import leaves behind: an object the collector tracks."""


@pytest.fixture
def collector():
    """The collector as a command finds it (on, nothing frozen); restored afterwards, whatever the test did."""
    was_enabled = gc.isenabled()
    gc.unfreeze()
    gc.enable()
    yield
    gc.unfreeze()
    (gc.enable if was_enabled else gc.disable)()


def tracked(obj) -> bool:
    """Whether a collection would walk obj (a frozen object is in no generation)."""
    return any(o is obj for o in gc.get_objects())


def test_the_collector_is_off_inside_and_on_afterwards_with_what_was_made_frozen(collector):
    before = Module()
    with heavy_imports():
        assert not gc.isenabled()
        made = Module()
        assert tracked(made)
    assert gc.isenabled()
    assert not tracked(made) and not tracked(before)
    after = Module()
    assert tracked(after)


def test_a_failed_import_turns_the_collector_back_on(collector):
    with pytest.raises(ModuleNotFoundError):
        with heavy_imports():
            import chatvector_no_such_module  # noqa: F401
    assert gc.isenabled()


def test_a_block_inside_another_leaves_the_collector_to_the_outer_one(collector):
    with heavy_imports():
        with heavy_imports():
            inner = Module()
        assert not gc.isenabled() and tracked(inner)
    assert gc.isenabled() and not tracked(inner)


def test_a_collector_the_user_turned_off_stays_off(collector):
    gc.disable()
    with heavy_imports():
        made = Module()
    assert not gc.isenabled() and tracked(made)
