"""The garbage-collector tuning that web and worker processes apply once the app is loaded."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from core.runtime import GEN0_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_loaded_objects_are_frozen_and_young_collections_are_rarer(restored_collector: None) -> None:
    gen1, gen2 = gc.get_threshold()[1:]
    tune_garbage_collector()
    assert gc.get_freeze_count() > 10_000  # the app and its libraries
    assert gc.get_threshold() == (GEN0_THRESHOLD, gen1, gen2)
    assert GEN0_THRESHOLD > 700  # CPython's default


def test_worker_processes_apply_it() -> None:
    from celery import signals

    from config import celery

    for signal in (signals.worker_process_init, signals.worker_ready):
        assert any(receiver() is celery._tune_garbage_collector for _, receiver in signal.receivers)


def test_web_workers_apply_it_once_the_views_are_loaded(restored_collector: None) -> None:
    from config import gunicorn

    gunicorn.post_worker_init(object())  # gunicorn calls it with the worker, which it does not use
    assert gc.get_threshold()[0] == GEN0_THRESHOLD
    assert gc.get_freeze_count() > 10_000
