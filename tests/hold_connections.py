"""Opens N idle TCP connections to 127.0.0.1:PORT, prints "ready", and holds
them until its standard input closes. Used by the hostile-input tests and
`make bench` (one process may not hold 20,000 descriptors here).

    /usr/bin/python3 tests/hold_connections.py PORT N
"""
import socket
import sys

socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", int(sys.argv[1])))
    socks.append(s)
print("ready", flush=True)
sys.stdin.read()
