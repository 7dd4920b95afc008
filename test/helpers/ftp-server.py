"""A real FTP server (Debian's python3-pyftpdlib) for the ftpDownload tests.

Usage: python3 ftp-server.py ROOT [ADDRESS]
Serves ROOT read-only on ADDRESS (default 127.0.0.1; "::1" for IPv6), an ephemeral port, to "anonymous" and to "alice" with password "secret".
Prints the port on its first line of output once it listens, then serves until killed or until its stdin closes.
"""
import logging
import os
import sys
import threading

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main() -> None:
    root = sys.argv[1]
    address = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    logging.basicConfig(level=logging.CRITICAL)
    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(root, perm="elr")
    authorizer.add_user("alice", "secret", root, perm="elr")
    handler = FTPHandler
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
