-- 8-sendall-type.lua -- sendall() of a non-string failed inside socket.lua.
--
-- What broke: sendall(data) took #data before any check, so a table or a
-- function gave "attempt to get length of a ... value (local 'data')"
-- from bindings/socket.lua -- an error that named neither sendall nor the
-- argument (issue 8 asks that wrong argument types give argument errors
-- naming the function). The fix: sendall checks its argument first and
-- raises TypeError "bad argument #1 to 'sendall' (string expected, got
-- function)".
local socket = require "socket"
local a, b = socket.socketpair()
for _, v in ipairs{ {}, print, true } do
  local ok, err = pcall(a.sendall, a, v)
  assert(not ok and err.name == "TypeError", tostring(err))
  assert(tostring(err):find("'sendall'", 1, true), tostring(err))
end
a:sendall("fine")
assert(b:recv(10) == "fine")
a:close(); b:close()
print("ok")
