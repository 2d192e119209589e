"""`make test` runs on pytest-xdist workers, and each worker builds its own fixtures: checked on this very session's
collection, every module-scoped fixture and the shared tiny run are built by one worker only."""

import os
from collections import defaultdict

import pytest


def _group(item):
    mark = item.get_closest_marker("xdist_group")
    return mark.args[0] if mark else None


def test_tests_sharing_an_expensive_fixture_share_a_worker_group(request):
    users = defaultdict(set)  # (fixture, module or "") -> groups of the tests that use it
    for item in request.session.items:
        info = getattr(item, "_fixtureinfo", None)
        for name, defs in (info.name2fixturedefs.items() if info else ()):
            if defs and defs[-1].scope == "module":
                users[(name, item.module.__name__)].add(_group(item))
        for name in ("clone_run", "cpu_image"):
            if name in item.fixturenames:
                users[(name, "")].add(_group(item))
    split = {k: v for k, v in users.items() if len(v) > 1 or None in v}
    assert not split, f"built on more than one worker: {split}"


def test_container_tests_run_one_at_a_time_beside_the_shared_run(request):
    for item in request.session.items:
        if item.get_closest_marker("container") or "clone_run" in item.fixturenames:
            assert _group(item) == "e2e", item.nodeid


def test_under_xdist_the_scheduler_sees_the_groups(request):
    """pytest-xdist's loadgroup scheduler reads a group from a `@group` suffix it writes into the node id; a pytest
    that ignores that write (9.2, pytest-dev/pytest-xdist#1386) leaves the marks in place and the grouping off."""
    grouped = [i for i in request.session.items if _group(i)]
    if "PYTEST_XDIST_WORKER" not in os.environ or not grouped:
        pytest.skip("not under pytest-xdist, or no grouped test selected (make test runs it with both)")
    lost = [i.nodeid for i in grouped if not i.nodeid.endswith("@" + _group(i))]
    assert not lost, f"{len(lost)} grouped tests without their group in the node id, e.g. {lost[0]}"


def test_slow_work_comes_first_and_a_module_group_stays_in_its_module_block(request):
    """The collection order xdist hands work out in: slow tests (and their groups) before the rest, container tests
    last; and no other module's test falls between the tests of a module group, so that one process (`WORKERS=0`)
    still builds each module fixture once (pytest tears a module fixture down when the next test is elsewhere)."""
    items = request.session.items
    slow = {_group(i) or i.nodeid for i in items if i.get_closest_marker("slow")}
    keys = [(bool(i.get_closest_marker("container")), (_group(i) or i.nodeid) not in slow) for i in items]
    assert keys == sorted(keys)
    where = defaultdict(list)
    for n, item in enumerate(items):
        if _group(item) and _group(item) != "e2e":
            where[_group(item)].append(n)
    for group, ns in where.items():
        between = {items[n].module.__name__ for n in range(ns[0], ns[-1] + 1)}
        assert between == {items[ns[0]].module.__name__}, (group, between)
