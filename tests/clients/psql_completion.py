"""psql's tab completion against `sabot serve`: psql runs interactively in a pseudo-terminal,
"SELECT * FROM <prefix>" and a Tab are typed, and what psql shows is printed (the completed
line, or the list of candidates after a second Tab). Run by tests/server.rs with the server's
port and a table-name prefix."""

import os
import pty
import re
import select
import signal
import sys
import time

port, prefix = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ["PSQLRC"] = os.devnull
    os.execvp("psql", ["psql", "-h", "127.0.0.1", "-p", port, "-U", "sabot", "sabot"])


def read_until(pattern, seconds):
    """What psql writes until `pattern` matches it or `seconds` pass."""
    out = b""
    end = time.time() + seconds
    while time.time() < end and not re.search(pattern, out):
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


read_until(rb"=#", 30)
typed = f"SELECT * FROM {prefix}".encode()
os.write(fd, typed + b"\t")
# A unique completion ends with a space after the completed name.
shown = read_until(re.escape(typed) + rb"\w*\s", 10)
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
print(shown.decode(errors="replace").replace("\x1b[?2004h", "").strip())
