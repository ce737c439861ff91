"""A second launch on the same data dir hands its request to the running window."""

from __future__ import annotations

from pathlib import Path

from desktop_app.ui.single_instance import InstanceServer, send_to_running, server_name


def test_names_differ_per_data_dir_and_fit_a_socket_path(tmp_path: Path) -> None:
    a, b = server_name(tmp_path / "a"), server_name(tmp_path / "b")
    assert a != b and a == server_name(tmp_path / "a")
    assert len(a) < 40


def test_request_reaches_the_running_instance(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = server_name(tmp_path)
    assert not send_to_running(name, {"image": "x.jpg"})  # nobody listens yet
    server = InstanceServer(name)
    assert server.listen()
    try:
        with qtbot.waitSignal(server.request_received, timeout=10_000) as got:
            # the sender blocks; the server's signals need this thread's event loop, which
            # waitSignal runs once the send has returned
            assert send_to_running(name, {"image": "/photos/a.jpg"})
        assert got.args == [{"image": "/photos/a.jpg"}]
    finally:
        server.close()
    assert not send_to_running(name, {})  # closed: the next launch starts its own window
