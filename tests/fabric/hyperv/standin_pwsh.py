"""A stand-in `pwsh` for the Hyper-V end-to-end tests: what drctl's local runner runs.

It hands its arguments and the script on its stdin to the emulated hosts of
tests/fabric/hyperv/pwsh.py (a TCP server on 127.0.0.1, at the port that
DRCTL_TEST_PWSH_PORT names), which checks and runs it, and prints what the
server answers, exiting with the code it gives. `PwshServer` writes it as
`pwsh` into a directory of its own with this interpreter in its first line
and `-S`: it starts once per script drctl sends, so only the standard library.
"""

import json
import os
import socket
import sys

request = json.dumps({"argv": sys.argv[1:], "stdin": sys.stdin.read()}).encode()
with socket.create_connection(("127.0.0.1", int(os.environ["DRCTL_TEST_PWSH_PORT"]))) as conn:
    conn.sendall(request)
    conn.shutdown(socket.SHUT_WR)
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
if not chunks:  # the server dropped the call (a test ended with this script held)
    sys.exit(255)
answer = json.loads(b"".join(chunks))
sys.stdout.write(answer["stdout"])
sys.stderr.write(answer["stderr"])
sys.exit(answer["code"])
