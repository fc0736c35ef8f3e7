"""The served-process harness itself: a free port taken by another process before the server binds it."""

import socket

import pytest

from tests.harness import served
from tests.harness.served import Server


@pytest.mark.served  # it starts one
def test_a_port_taken_before_the_bind_is_left_for_another(tmp_path, databases, monkeypatch):
    """Another listener answers /readyz on a taken port too (a served process of another test did): the start must
    not take that answer for its own server's, and must serve on another port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1], served.free_port()])
        monkeypatch.setattr(served, "free_port", lambda: next(ports))
        path = tmp_path / "port.db"
        srv = Server(path, workers=0, db_url=databases.create(path)).start()
        try:
            assert srv.client.base_url.port != taken.getsockname()[1]
            assert srv.client.get("/readyz").status_code == 200
            assert "address already in use" in srv.read_log()
        finally:
            srv.stop()
