-- 4-closed-stdin.lua -- moonsock started with stdin closed broke input().
--
-- What broke: with descriptor 0 closed at start-up, the first descriptor
-- moonsock opened took number 0 (the epoll fd, or under poll the first
-- listener), so input() waited on the listener or the epoll fd and a
-- serving task died with "OSError: [Errno 16] Device or resource busy".
-- The fix: main.c points closed descriptors 0, 1 and 2 at /dev/null
-- before opening anything, so input() sees end of input (EOFError) and
-- sockets never get the standard numbers.
package.path = "./tests/lua/?.lua;" .. package.path
local exe = require("moonsock_exe")()
local child = os.tmpname()
local f = assert(io.open(child, "w"))
f:write([[
local socket = require "socket"
local s = socket.socket()
assert(s:fileno() > 2, "socket got standard descriptor " .. s:fileno())
s:close()
local ok, err = pcall(input)
assert(not ok and err.name == "EOFError", tostring(err))
io.stderr:write("child ok\n")
]])
f:close()
for _, backend in ipairs { "epoll", "poll" } do
  local cmd = ("MSK_BACKEND=%s sh -c 'exec 0<&- 1>&-; exec %s %s' 2>&1")
              :format(backend, exe, child)
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok = p:close()
  assert(ok and out:find("child ok", 1, true),
         backend .. ": child failed: " .. out)
end
os.remove(child)
print("ok")
