"""``desktop-app status --json`` is a stable interface: the status value's JSON keeps
today's keys, order and shapes."""

from __future__ import annotations

import json

from desktop_app.engine.status import Failure, LibraryStatus, RootStatus


def test_status_json_keeps_its_keys_order_and_shapes() -> None:
    st = LibraryStatus(
        files=3,
        distinct=2,
        failed=1,
        encoder="histogram",
        encoder_label="histogram on CPU",
        device="cpu",
        model_warning=None,
        vectors={"full": 2, "region": 18},
        data_dir="/data",
        store_bytes=1234,
        roots=(RootStatus("/a", True, 2), RootStatus("/b", False, 1)),
        failures=(Failure("/a/x.jpg", "not an image"),),
        store_health="ok",
        catalog_backup=None,
    )
    assert json.dumps(st.to_json()) == (
        '{"files": 3, "distinct": 2, "failed": 1, "encoder": "histogram", '
        '"encoder_label": "histogram on CPU", "device": "cpu", "model_warning": null, '
        '"vectors": {"full": 2, "region": 18}, "data_dir": "/data", "store_bytes": 1234, '
        '"roots": [{"path": "/a", "online": true, "files": 2}, '
        '{"path": "/b", "online": false, "files": 1}], '
        '"failures": [{"path": "/a/x.jpg", "reason": "not an image"}], '
        '"store_health": "ok", "catalog_backup": null, "store": null}'
    )
