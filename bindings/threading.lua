-- threading.lua -- Python's threading module with green threads.
--
-- A Thread is a task of the runtime: it runs when the thread that started
-- it waits, never in parallel, so no Lua state is shared between OS
-- threads. Thread{target = f, args = {...}, daemon = false, name = ...}
-- mirrors Python's keyword arguments. Event and Lock suspend only the
-- calling task. As in Python, the program ends when the main chunk has
-- returned and no non-daemon thread is left.

local task = require "moonsock.task"
local errors = require "moonsock.errors"

local M = {}

local function current_task(what)
  local co = task.current()
  if co == nil then
    errors.throw("RuntimeError", what .. " outside a task", 3)
  end
  return co
end

---------------------------------------------------------------------------
-- Event

local Event = {}
Event.__index = Event

-- gen counts set() calls, so a waiter that set() woke returns true even
-- when clear() ran before it got its turn (Python's Event.wait returns
-- what the condition said, not the flag at that later moment).
function M.Event()
  return setmetatable({ flag = false, gen = 0, waiters = {} }, Event)
end

function Event:is_set() return self.flag end

function Event:set()
  self.flag = true
  self.gen = self.gen + 1
  local waiters = self.waiters
  self.waiters = {}
  for _, co in ipairs(waiters) do task.wakeup(co, true) end
end

function Event:clear() self.flag = false end

-- wait([timeout]) -> true once set, false when timeout passed first.
function Event:wait(timeout)
  if self.flag then return true end
  if not task.active then
    errors.throw("RuntimeError", "Event.wait needs the moonsock runtime", 2)
  end
  local co = current_task("Event.wait")
  local waiters = self.waiters
  waiters[#waiters + 1] = co
  local deadline = task.deadline(timeout)
  local gen = self.gen
  while not self.flag and self.gen == gen do
    local woke = task.suspend(deadline)
    if woke == false then break end
  end
  for i = #waiters, 1, -1 do
    if waiters[i] == co then table.remove(waiters, i) end
  end
  return self.flag or self.gen ~= gen
end

---------------------------------------------------------------------------
-- Lock

local Lock = {}
Lock.__index = Lock

function M.Lock()
  return setmetatable({ owner = nil, waiters = {} }, Lock)
end

-- acquire([blocking[, timeout]]) -> bool
function Lock:acquire(blocking, timeout)
  if blocking == nil then blocking = true end
  local co = task.current() or true
  if self.owner == nil then
    self.owner = co
    return true
  end
  if not blocking then return false end
  if timeout ~= nil and timeout < 0 then timeout = nil end
  local me = current_task("Lock.acquire")
  local deadline = task.deadline(timeout)
  local waiters = self.waiters
  waiters[#waiters + 1] = me
  while self.owner ~= nil do
    if task.suspend(deadline) == false then break end
  end
  for i = #waiters, 1, -1 do
    if waiters[i] == me then table.remove(waiters, i) end
  end
  if self.owner == nil then
    self.owner = me
    return true
  end
  return false
end

function Lock:release()
  if self.owner == nil then
    errors.throw("RuntimeError", "release unlocked lock", 2)
  end
  self.owner = nil
  local w = self.waiters[1]
  if w then task.wakeup(w, true) end
end

function Lock:locked() return self.owner ~= nil end

Lock.__close = function(self) if self.owner ~= nil then self:release() end end

---------------------------------------------------------------------------
-- Thread

local Thread = {}
Thread.__index = Thread
local counter = 0

-- Thread{target = f, args = {...}, kwargs = nil, daemon = false, name = s}
function M.Thread(opts)
  opts = opts or {}
  counter = counter + 1
  return setmetatable({
    target = opts.target, args = opts.args or {},
    daemon = opts.daemon and true or false,
    name = opts.name or ("Thread-" .. counter),
    started = false, done = M.Event(),
  }, Thread)
end

-- run(): what the thread does; subclasses may override it.
function Thread:run()
  if self.target then
    self.target(table.unpack(self.args, 1, self.args.n or #self.args))
  end
end

local function bootstrap(self)
  local ok, err = xpcall(self.run, debug.traceback, self)
  if not ok then
    task.log(3, ("Exception in thread %s: %s"):format(self.name,
                                                      tostring(err)))
  end
  self.done:set()
end

function Thread:start()
  if self.started then
    errors.throw("RuntimeError", "threads can only be started once", 2)
  end
  if not task.active then
    errors.throw("RuntimeError", "threads need the moonsock runtime", 2)
  end
  self.started = true
  local spawn = self.daemon and task.spawn_daemon or task.spawn
  self.task = spawn(bootstrap, self)
end

-- join([timeout]): wait for the thread to end (or the timeout to pass).
function Thread:join(timeout)
  if not self.started then
    errors.throw("RuntimeError", "cannot join thread before it is started",
                 2)
  end
  if self.task ~= nil and self.task == task.current() then
    errors.throw("RuntimeError", "cannot join current thread", 2)
  end
  self.done:wait(timeout)
end

function Thread:is_alive()
  return self.started and not self.done:is_set()
end

return M
