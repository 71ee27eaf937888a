-- admin.lua -- the handler the hostile tests attack: a line protocol
-- whose commands misbehave on request, plus a STATS line the tests read
-- the runtime's counters from.
--
--   moonsock --listen 127.0.0.1:0 tests/hostile/admin.lua
--
-- A connection reads lines; each line is one command:
--   STATS            -> "tasks=N live=N mem=BYTES conns=N signals=N\n"
--                       (after a full collection, so mem is live data)
--   ECHO             -> echo every following byte until end of stream
--   SINK             -> read until end of stream, reply "got=N\n"
--   DIGEST           -> as SINK, with Lua work on every chunk (a sampled
--                       sum), so a fast client always has data waiting
--   BIG N            -> send N bytes of "x", then close
--   SPIN             -> while true do end
--   SPINPCALL        -> a loop that catches every error with pcall
--   SPINCO           -> an endless loop inside a coroutine of its own
--   HOG              -> allocate without bound
--   HOGPCALL         -> allocate without bound, catching memory errors
--   ERRTABLE, ERRNIL -> error({}), error(nil)
--   ERRTOSTRING      -> an error object whose __tostring raises
--   GCERR            -> drop an object whose __gc raises, then collect
--   SLEEP S          -> sleep S seconds, reply "slept\n"
--   PING             -> "PONG\n"
--   anything else    -> "ERR unknown command\n" (never echoed as a format)
-- SIGUSR1 is counted (signals=N in STATS), to test signal storms.

local task = require "moonsock.task"
local memcap = require "_moonsock.memcap"

local signals = 0
task.onsignal(10, function() signals = signals + 1 end)  -- SIGUSR1

local Admin = { listen = { "127.0.0.1", 0 } }

local function readline(self)
  local buf = self.buf
  while true do
    local i = buf:find("\n", 1, true)
    if i then
      self.buf = buf:sub(i + 1)
      return buf:sub(1, i - 1)
    end
    if #buf > 4096 then return nil end
    local data = self.request:recv(4096)
    if data == "" then return nil end
    buf = buf .. data
  end
end

local commands = {}

function commands.STATS(self)
  collectgarbage()
  collectgarbage()
  local tasks, live = task.count()
  local m = memcap.stats()
  self.request:sendall(("tasks=%d live=%d mem=%d conns=%d signals=%d\n")
    :format(tasks, live, m and m.used or collectgarbage("count") * 1024,
            self.server.connections or -1, signals))
end

function commands.PING(self) self.request:sendall("PONG\n") end

function commands.ECHO(self)
  local conn = self.request
  if self.buf ~= "" then conn:sendall(self.buf); self.buf = "" end
  while true do
    local data = conn:recv(65536)
    if data == "" then return "done" end
    conn:sendall(data)
  end
end

function commands.SINK(self)
  local conn, n = self.request, #self.buf
  self.buf = ""
  while true do
    local data = conn:recv(65536)
    if data == "" then break end
    n = n + #data
  end
  conn:sendall(("got=%d\n"):format(n))
  return "done"
end

function commands.DIGEST(self)
  local conn, n, sum = self.request, #self.buf, 0
  self.buf = ""
  local byte = string.byte
  while true do
    local data = conn:recv(65536)
    if data == "" then break end
    n = n + #data
    for i = 1, #data, 16 do sum = sum + byte(data, i) end
  end
  conn:sendall(("got=%d sum=%d\n"):format(n, sum))
  return "done"
end

function commands.BIG(self, arg)
  local n = math.tointeger(tonumber(arg)) or 0
  local chunk = ("x"):rep(65536)
  while n > 0 do
    local k = math.min(n, #chunk)
    self.request:sendall(k == #chunk and chunk or chunk:sub(1, k))
    n = n - k
  end
  return "done"
end

function commands.SPIN() while true do end end

function commands.SPINPCALL()
  while true do
    pcall(function() while true do end end)
  end
end

function commands.SPINCO()
  local co = coroutine.wrap(function() while true do end end)
  co()
end

function commands.HOG()
  local t = {}  -- luacheck: ignore (grows until the cap stops it)
  for i = 1, math.huge do t[i] = ("y"):rep(1000) .. i end
end

function commands.HOGPCALL()
  local t, i = {}, 0  -- luacheck: ignore (grows until the cap stops it)
  while true do
    pcall(function()
      i = i + 1
      t[i] = ("z"):rep(1000) .. i
    end)
  end
end

function commands.ERRTABLE() error({}) end
function commands.ERRNIL() error(nil) end

function commands.ERRTOSTRING()
  error(setmetatable({}, { __tostring = function() error("nested") end }))
end

function commands.GCERR(self)
  setmetatable({}, { __gc = function() error("boom in __gc") end })
  collectgarbage()
  collectgarbage()
  self.request:sendall("collected\n")
end

function commands.SLEEP(self, arg)
  task.sleep(tonumber(arg) or 0)
  self.request:sendall("slept\n")
end

function Admin:handle()
  self.buf = ""
  while true do
    local line = readline(self)
    if line == nil then return end
    local cmd, arg = line:match("^(%u+)%s*(.*)$")
    local f = commands[cmd or ""]
    if f == nil then
      self.request:sendall("ERR unknown command\n")
    elseif f(self, arg) == "done" then
      return
    end
  end
end

return Admin
