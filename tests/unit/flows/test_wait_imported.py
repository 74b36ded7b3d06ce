"""flows.engines.wait_imported: the command's thread waits for the preload thread's import, never for nothing."""
import sys
import threading
import time
import types

from flows.engines import wait_imported


def test_an_imported_module_needs_no_wait():
    t0 = time.monotonic()
    assert wait_imported("json") and time.monotonic() - t0 < 0.5


def test_no_preload_thread_no_module_no_wait():
    t0 = time.monotonic()
    assert not wait_imported("conductor_never_imported_this", timeout=5) and time.monotonic() - t0 < 0.5


def test_it_waits_until_the_preload_thread_has_finished_the_module():
    name = "conductor_test_slow_module"
    module = types.ModuleType(name)
    module.__spec__ = types.SimpleNamespace(_initializing=True)  # as Python marks a module being imported

    def preload():
        sys.modules[name] = module
        time.sleep(0.3)
        module.__spec__._initializing = False

    thread = threading.Thread(target=preload, name="preload")
    thread.start()
    try:
        time.sleep(0.05)
        t0 = time.monotonic()
        assert wait_imported(name) and time.monotonic() - t0 >= 0.2
    finally:
        thread.join()
        sys.modules.pop(name, None)
