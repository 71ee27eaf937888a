"""py_asyncio.py -- asyncio's Protocol echo server, the transports-and-
protocols form the asyncio documentation gives for speed (its
"TCP Echo Server" example). Run: python3 py_asyncio.py PORT [uvloop]
(the second form installs uvloop's event loop, as uvloop's README says).
asyncio already sets TCP_NODELAY on every TCP transport; it is set again
here so the rule "TCP_NODELAY everywhere" is visible in the code."""
import asyncio
import socket
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port,
                                      backlog=1024, reuse_address=True)
    print("listening on 127.0.0.1:%d" % port, file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    port = int(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[2] == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main(port))
