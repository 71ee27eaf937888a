"""py_threading.py -- Python's socketserver.ThreadingTCPServer, as its
documentation shows it: one thread per connection, a BaseRequestHandler
whose handle() loops recv/sendall. Run: python3 py_threading.py PORT."""
import socket
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024          # the backlog every server uses


if __name__ == "__main__":
    with Server(("127.0.0.1", int(sys.argv[1])), Echo) as srv:
        print("listening on 127.0.0.1:%s" % sys.argv[1], file=sys.stderr,
              flush=True)
        srv.serve_forever()
