"""Shared fixtures. Every test runs offline: the hub is declared unreachable for the session."""
import http.server
import os
import threading

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model():
    """One tiny HAT shared by the tests that only read it (seeded, eval mode)."""
    from hat_min import HAT, HATConfig

    torch.manual_seed(0)
    return HAT(HATConfig.preset("tiny")).eval()


@pytest.fixture
def text_batch():
    """Token ids and mask of three captions of different lengths, padded to 10."""
    ids = torch.tensor([[101, 2048, 2417, 27189, 2682, 1037, 2630, 4418, 102, 0],
                        [101, 1037, 2235, 3756, 2675, 102, 0, 0, 0, 0],
                        [101, 2093, 2502, 2665, 3340, 2917, 1037, 14082, 2417, 102]])
    return ids, (ids != 0).long()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over http on 127.0.0.1 (loopback only): its base URL."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             lambda *a: _Quiet(*a, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
