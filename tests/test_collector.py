"""The cyclic collector paused while a spec is expanded and analysed (archspec.collector)."""
import gc
import weakref

from archspec.collector import collector_paused


class Cell:
    pass


def test_a_cycle_made_while_paused_is_freed_by_the_next_full_collection():
    with collector_paused():
        assert not gc.isenabled()
        a, b = Cell(), Cell()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
    assert gc.isenabled()
    gc.collect()
    assert gone() is None


def test_the_objects_made_while_paused_go_to_the_oldest_generation_unscanned():
    with collector_paused():
        made = [[i] for i in range(1_000)]
    # left young, the first allocations after the pause would scan them all, then again in
    # the middle generation
    young = {id(o) for generation in (0, 1) for o in gc.get_objects(generation)}
    assert not any(id(o) in young for o in made)
    assert gc.is_tracked(made[-1])


def test_a_caller_that_paused_the_collector_keeps_it_paused():
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
