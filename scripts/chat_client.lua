-- chat_client.lua -- a terminal client for scripts/chat.lua.
--
--   moonsock scripts/chat_client.lua [HOST] [PORT]   # 127.0.0.1 8000
--
-- The tutorial's client, grown up: it reads the keyboard and the socket
-- at the same time, as a Python program would with a second thread, so
-- messages print as they arrive rather than one per line typed. Each
-- typed line is sent with a newline (the chat protocol, docs/chat.md);
-- `exit`, end of input (Ctrl-D) or Ctrl-C leaves. The keyboard thread is
-- a daemon: the program ends when the server's side of the connection
-- ends, whoever closed it.

local socket = require "socket"
local threading = require "threading"
local time = require "time"
local task = require "moonsock.task"

local host = arg[1] or "127.0.0.1"
local port = math.tointeger(tonumber(arg[2] or "8000"))
if arg[3] ~= nil or port == nil or port < 1 or port > 65535 then
  io.stderr:write("usage: moonsock scripts/chat_client.lua [HOST] [PORT]\n")
  os.exit(2)
end

local connected, sock = pcall(socket.create_connection, { host, port })
if not connected then
  io.stderr:write(("chat_client: cannot connect to %s:%d: %s\n")
                  :format(host, port, tostring(sock)))
  os.exit(1)
end
io.stderr:write(("connected to %s:%d; type /help, or exit to leave\n")
                :format(host, port))

-- Leave politely: /quit lets the server say goodbye and tell the room,
-- and the half-close means the reader still prints that goodbye. Should
-- the server not close its side soon, stop reading anyway.
local leaving = false
local function leave()
  if leaving then return end
  leaving = true
  pcall(sock.sendall, sock, "/quit\n")
  pcall(sock.shutdown, sock, socket.SHUT_WR)
  time.sleep(2)
  pcall(sock.shutdown, sock, socket.SHUT_RDWR)
end

local function keyboard()
  while true do
    local ok, line = pcall(input)  -- luacheck: ignore (builtin)
    if not ok or line == "exit" then break end
    if not pcall(sock.sendall, sock, line .. "\n") then return end
  end
  leave()
end

threading.Thread { target = keyboard, daemon = true, name = "keyboard" }
  :start()
task.onsignal(task.SIGINT, function()
  task.spawn_daemon(leave)
end)

-- The socket reader is the main chunk: when it returns, the program ends.
while true do
  local ok, data = pcall(sock.recv, sock, 4096)
  if not ok then
    io.stderr:write("chat_client: ", tostring(data), "\n")
    break
  end
  if data == "" then break end
  io.stdout:write(data)
  io.stdout:flush()
end
sock:close()
io.stderr:write("disconnected\n")
