"""The qasync loop, error reporting and the embedded server of the windowed app."""

import asyncio
import logging
import sys

from desktop_call.ui.runtime import EmbeddedServer, lan_address, run_qt, setup_logging


def test_a_long_qasync_loop_leaves_the_refcount_of_none_alone(qapp):
    """PySide6 6.12.0 on Python 3.11 drops a reference to None per loop iteration and
    aborts a call within a minute (docs/architecture.md); the pin must keep it out."""

    async def spin() -> None:
        for _ in range(3000):
            await asyncio.sleep(0)

    run_qt(qapp, spin())  # warm up: first iterations allocate caches
    before = sys.getrefcount(None)
    run_qt(qapp, spin())
    assert abs(sys.getrefcount(None) - before) < 100


def test_errors_in_tasks_are_logged_not_lost(qapp, caplog):
    async def main() -> None:
        async def broken() -> None:
            raise RuntimeError("boom in a task")

        task = asyncio.ensure_future(broken())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del task  # never awaited: only the loop's handler can report it

    with caplog.at_level(logging.ERROR):
        run_qt(qapp, main())
        import gc

        gc.collect()
    assert any("boom in a task" in str(r.exc_info) for r in caplog.records if r.exc_info)


def test_the_log_file_lands_in_the_given_folder(tmp_path):
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        path = setup_logging("info", tmp_path / "logs")
        logging.getLogger("desktop_call.test").info("hello log")
        for handler in root.handlers:
            handler.flush()
        assert path is not None and "hello log" in path.read_text()
    finally:
        for handler in root.handlers[len(handlers) :]:
            handler.close()
        root.handlers[:] = handlers


def test_the_embedded_server_hosts_or_shares(qapp):
    async def main() -> tuple:
        first = EmbeddedServer("127.0.0.1", 0)
        await first.start()
        try:
            second = EmbeddedServer("127.0.0.1", first.server.port)
            await second.start()  # the port is taken by a room server: share it
            return first.url, second.url, second.shared, second.error
        finally:
            await first.close()

    first_url, second_url, shared, error = run_qt(qapp, main())
    assert first_url == second_url and shared and error is None


def test_a_port_taken_by_something_else_is_a_clear_error(qapp):
    async def main() -> tuple:
        blocker = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = blocker.sockets[0].getsockname()[1]
        try:
            server = EmbeddedServer("127.0.0.1", port)
            await server.start()
            return server.url, server.error
        finally:
            blocker.close()

    url, error = run_qt(qapp, main())
    assert url is None and "Cannot host calls on port" in error


def test_lan_address_is_an_ipv4_address():
    address = lan_address()
    assert address.count(".") == 3


def test_a_lan_server_is_joined_over_loopback_and_linked_by_lan_address(qapp):
    async def main() -> dict:
        server = EmbeddedServer("0.0.0.0", 0)
        await server.start()
        try:
            return {"url": server.url, "link": server.link_url}
        finally:
            await server.close()

    urls = run_qt(qapp, main())
    assert urls["url"].startswith("ws://127.0.0.1:")
    assert urls["link"].split(":")[-1] == urls["url"].split(":")[-1]


def test_garbage_made_on_a_worker_thread_is_collected_on_the_qt_thread(qapp):
    """What kept Qt objects from being destroyed on a worker thread (a segfault later):
    under run_qt, cyclic garbage is collected by the Qt thread's timer only."""
    import gc
    import threading

    finalized_on: list[str] = []

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            finalized_on.append(threading.current_thread().name)

    def worker() -> None:
        for _ in range(2_000):  # past the youngest generation's threshold (700)
            Cycle()  # unreachable at once, freed only by the cyclic collector

    async def scenario() -> bool:
        enabled_inside = gc.isenabled()
        thread = threading.Thread(target=worker, name="worker")
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        async with asyncio.timeout(10):
            while len(finalized_on) < 2_000:  # noqa: ASYNC110 - the collector's timer
                await asyncio.sleep(0.02)
        return enabled_inside

    enabled_inside = run_qt(qapp, scenario())
    assert not enabled_inside
    assert set(finalized_on) == {threading.main_thread().name}
