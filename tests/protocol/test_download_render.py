"""A download reply rendered off the event loop is byte for byte the renderer's."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest

from chatd.protocol.events import Mode
from chatd.protocol.render import Renderer, download_reply
from chatd.protocol.replies import AnyOk

MiB = 1024 * 1024
SLOW = 60.0  # seconds allowed for a 5 MiB transfer on a loaded machine (not asserted)


@pytest.mark.parametrize("size", [0, 1, 57, 58, 200_000])
@pytest.mark.parametrize("mode", [Mode.TEXT, Mode.JSON])  # `download` is the line door's
def test_download_rendered_off_the_loop_matches_the_renderer(size: int, mode: Mode) -> None:
    body = os.urandom(size)
    f = {"id": 7, "name": "naïve.txt", "size": size, "sha256": hashlib.sha256(body).hexdigest()}
    ok = AnyOk("download", "DOWNLOAD", {"file": f, "data": base64.b64encode(body).decode()})
    expected = Renderer().render(ok, mode)
    assert download_reply("DOWNLOAD", f, body, mode) == expected
    if mode is Mode.JSON:
        assert json.loads(expected)["data"] == ok.fields["data"]
    else:
        assert expected.startswith(b"OK file 7 ") and expected.endswith(b".\n")
