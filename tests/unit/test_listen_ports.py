"""The test masters' ports: free, distinct, and outside the kernel's ephemeral range."""

import random
import socket

from tests.support import harness


def test_ephemeral_range_is_read_from_the_kernel_file(tmp_path):
    path = tmp_path / "ip_local_port_range"
    path.write_text("40000\t50000\n")
    assert harness.ephemeral_range(str(path)) == (40000, 50000)


def test_ephemeral_range_falls_back_to_the_linux_default_when_unreadable(tmp_path):
    assert harness.ephemeral_range(str(tmp_path / "missing")) == (32768, 60999)
    garbled = tmp_path / "garbled"
    garbled.write_text("not numbers")
    assert harness.ephemeral_range(str(garbled)) == (32768, 60999)


def test_listen_ports_are_distinct_free_and_below_the_ephemeral_range():
    low, _high = harness.ephemeral_range()
    ports = harness.listen_ports("127.0.0.1", 5, rng=random.Random(7))
    assert len(set(ports)) == 5
    for port in ports:
        assert 20000 <= port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_never_handed_out():
    class Replay(random.Random):
        """Offers the taken port first, then ordinary picks."""

        def __init__(self, first):
            super().__init__(3)
            self.first = first

        def randint(self, a, b):
            if self.first is not None:
                first, self.first = self.first, None
                return first
            return super().randint(a, b)

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        port = harness.listen_ports("127.0.0.1", 1)[0]
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert port not in harness.listen_ports("127.0.0.1", 1, rng=Replay(port))


def test_master_config_gives_its_own_ports_unless_the_caller_does(tmp_path):
    config = harness.master_config("127.0.0.1", tmp_path)
    low, _high = harness.ephemeral_range()
    assert config["ret_port"] != config["publish_port"]
    assert all(20000 <= config[key] < low for key in ("ret_port", "publish_port"))
    mine = harness.master_config("127.0.0.1", tmp_path, {"ret_port": 4506, "publish_port": 4505})
    assert (mine["ret_port"], mine["publish_port"]) == (4506, 4505)
