"""A real FTP server (Debian's python3-pyftpdlib) for the ftpDownload tests.

Usage: python3 ftp-server.py ROOT [ADDRESS] [--no-passive]
Serves ROOT read-only on ADDRESS (default 127.0.0.1; "::1" for IPv6), an ephemeral port, to "anonymous" and to "alice" with password "secret".
With --no-passive it refuses PASV and EPSV (502), as servers behind some firewalls do: clients must use active mode.
Prints the port on its first line of output once it listens, then serves until killed or until its stdin closes.
"""
import logging
import os
import sys
import threading

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


class NoPassiveHandler(FTPHandler):
    """Refuses passive mode, so that only PORT/EPRT (active) transfers work."""

    def ftp_PASV(self, line):
        self.respond("502 Passive mode refused by this server.")

    def ftp_EPSV(self, line):
        self.respond("502 Passive mode refused by this server.")


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--no-passive"]
    no_passive = "--no-passive" in sys.argv[1:]
    root = args[0]
    address = args[1] if len(args) > 1 else "127.0.0.1"
    logging.basicConfig(level=logging.CRITICAL)
    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(root, perm="elr")
    authorizer.add_user("alice", "secret", root, perm="elr")
    handler = NoPassiveHandler if no_passive else FTPHandler
    handler.authorizer = authorizer
    handler.banner = "test ftp server ready"
    handler.auth_failed_timeout = 0.05  # pyftpdlib's default 3 s pause after a failed login would slow the tests
    server = FTPServer((address, 0), handler)
    print(server.address[1], flush=True)

    # The test's end closes our stdin: stop then, even if the kill never comes.
    def watch_stdin() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever(timeout=0.2)


if __name__ == "__main__":
    main()
