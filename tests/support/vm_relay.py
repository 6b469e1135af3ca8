"""One TCP connection from a VM guest to the test master, relayed on the host.

QEMU runs this for every connection the guest opens to a ``guestfwd`` address
(``guestfwd=tcp:10.0.2.100:PORT-cmd:python vm_relay.py HOST PORT``), with the guest's
end of the connection as stdin/stdout.  It connects to ``HOST:PORT`` (the session
master on this machine) and copies bytes both ways until both sides are done.

Nothing may be printed: stdout and stderr are the guest's connection.
"""

import selectors
import socket
import sys


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    guest = socket.socket(fileno=0)
    try:
        master = socket.create_connection((host, port), timeout=10)
    except OSError:
        return 1
    master.settimeout(None)
    peers = {guest: master, master: guest}
    open_reads = {guest, master}
    selector = selectors.DefaultSelector()
    for sock in open_reads:
        selector.register(sock, selectors.EVENT_READ)
    while open_reads:
        for key, _ in selector.select():
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if data:
                try:
                    peers[sock].sendall(data)
                    continue
                except OSError:
                    return 0  # the other side is gone: nothing more to relay
            # EOF: pass it on, keep relaying the other direction.
            selector.unregister(sock)
            open_reads.discard(sock)
            try:
                peers[sock].shutdown(socket.SHUT_WR)
            except OSError:
                return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
