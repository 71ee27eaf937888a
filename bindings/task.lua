-- task.lua -- waiting, sleeping and green threads over the task runtime.
--
-- The Lua half of _moonsock.task (task.c). Every wait in moonsock goes
-- through M.wait: inside a task it yields the runtime's sentinel (the one
-- place that yields); outside any loop (a plain lua5.4) it blocks the
-- process with poll, as Python's blocking calls do. Also here: the builtin
-- input(), and coroutine.resume/wrap that pass a nested coroutine's waits
-- up to its task, so handlers may use coroutines of their own.

local raw = require "_moonsock.task"
local errors = require "moonsock.errors"

local M = {}

local SENTINEL = raw.sentinel
local active = raw.active
local yield, isyieldable = coroutine.yield, coroutine.isyieldable
local now, fdwait = raw.now, raw.fdwait
local ceil = math.ceil

M.READ, M.WRITE = raw.READ, raw.WRITE
M.active = active
M.now = now
M.monotonic = raw.monotonic

-- deadline(seconds|nil) -> absolute monotonic ms, or nil for none.
-- Rounds up, so a wait never ends a millisecond early. A huge timeout
-- (1e12 s, math.huge) gives a float that task.c clamps to "never".
function M.deadline(timeout)
  if timeout == nil or timeout < 0 then return nil end
  return now() + ceil(timeout * 1000)
end

-- wait(fd_or_socket, events, deadline) -> true | false (deadline) |
-- nil, errno (closed while waiting, EBUSY: another task waits on it).
function M.wait(fd, ev, deadline)
  if active and isyieldable() then
    return yield(SENTINEL, fd, ev, deadline)
  end
  return fdwait(fd, ev, deadline)
end
local wait = M.wait

-- sleep(seconds): suspend this task only.
function M.sleep(seconds)
  if type(seconds) ~= "number" then
    errors.throw("TypeError", "sleep() argument must be a number", 2)
  end
  if seconds ~= seconds then
    errors.throw("ValueError", "Invalid value NaN (not a number)", 2)
  end
  if seconds < 0 then
    errors.throw("ValueError", "sleep length must be non-negative", 2)
  end
  local deadline = now() + ceil(seconds * 1000)
  if active and isyieldable() then
    repeat
      yield(SENTINEL, -1, 0, deadline)   -- a stray wakeup just loops
    until now() >= deadline
  else
    fdwait(-1, 0, deadline)
  end
end

-- suspend(deadline) -> the values of wakeup(), or false at the deadline.
-- Only inside a task.
function M.suspend(deadline)
  if not (active and isyieldable()) then
    error("cannot suspend outside a task", 2)
  end
  return yield(SENTINEL, -1, 0, deadline)
end

-- current() -> the task (its coroutine) this code runs in, or nil. A
-- coroutine the script made itself runs inside the task that resumed it
-- last (resume below records that), so Event.wait, Lock.acquire and
-- Thread.join work there too: their wakeup goes to that task, whose
-- forwarding resume hands the values down.
local raw_current = raw.current or function() return nil end
local running = coroutine.running
local owner = setmetatable({}, { __mode = "k" })   -- coroutine -> task
function M.current()
  return raw_current() or owner[running()]
end
M.wakeup = raw.wakeup
M.spawn = raw.spawn
M.spawn_daemon = raw.spawn_daemon
M.spawn_then = raw.spawn_then
M.onsignal = raw.onsignal
M.stop = raw.stop
M.count = raw.count
M.setstatus = raw.setstatus
M.loglevel = raw.loglevel or function() return 1 end
M.SIGHUP, M.SIGINT, M.SIGTERM = raw.SIGHUP, raw.SIGINT, raw.SIGTERM
M.DEBUG, M.INFO, M.WARN, M.ERROR = 0, 1, 2, 3
M.log = raw.log or function(_, msg) io.stderr:write(msg, "\n") end

-- input([prompt]) -> line: Python's builtin; reads stdin without stopping
-- other tasks. Raises EOFError at end of input.
local stdin_buf = ""
local E = errors.errno
local EAGAIN, EBADF, EBUSY = E.EAGAIN, E.EBADF, E.EBUSY
function M.input(prompt)
  if prompt ~= nil then
    io.stdout:write(tostring(prompt))
    io.stdout:flush()
  end
  while true do
    local i = stdin_buf:find("\n", 1, true)
    if i then
      local line = stdin_buf:sub(1, i - 1)
      stdin_buf = stdin_buf:sub(i + 1)
      return (line:gsub("\r$", ""))
    end
    local ok, err = wait(0, M.READ, nil)
    if err == EBUSY then
      errors.throw("RuntimeError", "another task is already waiting in "
                   .. "input()", 2)
    end
    if ok == nil and err ~= EBADF then errors.raise(err, 2) end
    local data, errno = raw.read(0, 4096)
    if data == nil and errno ~= EAGAIN and errno ~= EBADF then
      errors.raise(errno)
    end
    if data == "" or errno == EBADF then
      if stdin_buf ~= "" then
        local line = stdin_buf
        stdin_buf = ""
        return line
      end
      errors.throw("EOFError", "EOF when reading a line", 2)
    end
    if data then stdin_buf = stdin_buf .. data end
  end
end

-- coroutine.resume and coroutine.wrap that forward a nested coroutine's
-- waits to the task it runs in (cqueues' auxlib.resume does the same).
-- raw.resume is coroutine.resume that also tells the runtime which
-- thread runs (for the CPU budget); a plain lua5.4 has only Lua's.
local co_resume = raw.resume or coroutine.resume
local co_create, co_close = coroutine.create, coroutine.close

local function forward(co, ok, first, ...)
  if ok and first == SENTINEL then
    if isyieldable() then
      return forward(co, co_resume(co, yield(SENTINEL, ...)))
    end
    -- Resumed where the task cannot yield (a C-call boundary such as a
    -- gsub callback): wait here, blocking the process, as a wait made
    -- right there would; the sentinel must never reach the caller.
    return forward(co, co_resume(co, fdwait(...)))
  end
  return ok, first, ...
end

local current = M.current

local function resume(co, ...)
  owner[co] = current()
  return forward(co, co_resume(co, ...))
end

local function unwrap(co, ok, ...)
  if ok then return ... end
  local err = ...
  co_close(co)
  error(err, 0)
end

local function wrap(f)
  local co = co_create(f)
  return function(...) return unwrap(co, resume(co, ...)) end
end

function M.install()
  if active then
    coroutine.resume = resume     -- luacheck: ignore (forwards waits)
    coroutine.wrap = wrap         -- luacheck: ignore
  end
  input = M.input             -- luacheck: ignore (Python's builtin)
end

return M
