-- task_spec.lua -- the task runtime: waiting, waking, sleeping, nesting.
--
-- A blocking call suspends only its task: these specs run as a task
-- (tests/run_busted.lua) and start others with threading.Thread or
-- task.spawn to play the other side. Checked here: one reader per socket
-- (a second gets RuntimeError, never a lost wake-up), close wakes a
-- waiter with EBADF, sleepers overlap, coroutines inside a task forward
-- their waits, a bare coroutine.yield() gives up one turn, and input()
-- reads stdin in a child moonsock without stopping the other tasks.

local socket = require "socket"
local threading = require "threading"
local time = require "time"
local task = require "moonsock.task"

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

-- start(f, ...) -> a started green thread running f(...)
local function start(f, ...)
  local th = threading.Thread{target = f, args = table.pack(...)}
  th:start()
  return th
end

describe("the task runtime", function()
  it("runs the spec itself as a task", function()
    assert.is_true(task.active)
    assert.is_thread(task.current())
  end)

  it("a second task waiting to read the same socket gets RuntimeError",
     function()
    local a, b = socket.socketpair()
    local first
    local th = start(function()
      first = a:recv(100)
    end)
    time.sleep(0.02)                     -- th now waits in recv
    local err = raises(a.recv, a, 10)
    assert.equal("RuntimeError", err.name)
    assert.matches("another task is already waiting to read", err.message)
    -- The first reader lost nothing: it still gets the data.
    b:sendall("for the first")
    th:join(2)
    assert.equal("for the first", first)
    a:close(); b:close()
  end)

  it("a second task waiting to accept gets RuntimeError", function()
    local srv <close> = socket.create_server{"127.0.0.1", 0}
    local th = start(function() pcall(srv.accept, srv) end)
    time.sleep(0.02)
    assert.equal("RuntimeError", raises(srv.accept, srv).name)
    srv:close()
    th:join(2)
    assert.is_false(th:is_alive())
  end)

  it("a reader and a writer may wait on one socket at once", function()
    local a, b = socket.socketpair()
    local got
    local reader = start(function() got = a:recv(10) end)
    time.sleep(0.01)
    -- Fill a's send buffer so that sendall must wait for write.
    local big = string.rep("w", 8 * 1024 * 1024)
    local writer = start(function() a:sendall(big) end)
    time.sleep(0.01)
    b:sendall("hi")
    local n = 0
    while n < #big do n = n + #b:recv(1 << 20) end
    reader:join(2); writer:join(2)
    assert.equal("hi", got)
    assert.equal(#big, n)
    a:close(); b:close()
  end)

  it("closing a socket wakes the task reading it with OSError EBADF",
     function()
    local a, b = socket.socketpair()
    local err, t_end
    local th = start(function()
      err = select(2, pcall(a.recv, a, 10))
      t_end = time.monotonic()
    end)
    time.sleep(0.02)
    local t0 = time.monotonic()
    a:close()
    th:join(2)
    assert.is_false(th:is_alive())
    assert.equal("OSError", err.name)
    assert.equal(9, err.errno)
    assert.is_true(t_end - t0 < 0.5)
    b:close()
  end)

  it("closing wakes a task waiting to write or to accept", function()
    local a, b = socket.socketpair()
    local werr
    local writer = start(function()
      werr = select(2, pcall(a.sendall, a, string.rep("x", 16 * 1024 * 1024)))
    end)
    local srv = socket.create_server{"127.0.0.1", 0}
    local aerr
    local acceptor = start(function()
      aerr = select(2, pcall(srv.accept, srv))
    end)
    time.sleep(0.02)
    a:close()
    srv:close()
    writer:join(2); acceptor:join(2)
    assert.equal(9, werr.errno)
    assert.equal(9, aerr.errno)
    b:close()
  end)

  it("a closed and reused fd number does not wake the new owner",
     function()
    local a, b = socket.socketpair()
    local err
    local th = start(function()
      err = select(2, pcall(a.recv, a, 1))
    end)
    time.sleep(0.01)
    local fd = a:fileno()
    a:close()
    local c, d = socket.socketpair()     -- the lowest free numbers
    assert.is_true(c:fileno() == fd or d:fileno() == fd)
    th:join(2)
    assert.equal(9, err.errno)
    c:settimeout(0.05)
    assert.equal("TimeoutError", raises(c.recv, c, 1).name)
    b:close(); c:close(); d:close()
  end)

  it("task.wait returns false at the deadline, nil EBADF when closed",
     function()
    local a, b = socket.socketpair()
    local t0 = task.now()
    assert.is_false(task.wait(a, task.READ, t0 + 30))
    assert.is_true(task.now() - t0 >= 30)
    assert.is_true(task.wait(a, task.WRITE, task.now() + 1000))
    b:sendall("x")
    assert.is_true(task.wait(a, task.READ, nil))
    a:close()
    local ok, errno = task.wait(a, task.READ, nil)
    assert.is_nil(ok)
    assert.equal(9, errno)
    b:close()
  end)

  it("spawn runs a function as a task with arguments", function()
    local got
    local done = threading.Event()
    task.spawn(function(x, y)
      time.sleep(0.01)
      got = x + y
      done:set()
    end, 2, 3)
    assert.is_true(done:wait(2))
    assert.equal(5, got)
  end)

  it("an error in a task ends that task only", function()
    local th = start(function() error("deliberate, ignore this log") end)
    th:join(2)
    assert.is_false(th:is_alive())
    assert.is_true(task.active)           -- and this task runs on
  end)

  it("spawn_then runs after(ctx, true, results...) once the body returns",
     function()
    local got, body_co, after_co
    local done = threading.Event()
    local ctx = {}
    task.spawn_then(function(...)
      after_co = task.current()
      got = table.pack(...)
      done:set()
    end, ctx, function(x)
      body_co = task.current()
      time.sleep(0.01)                   -- the body may wait
      return x * 2, "two"
    end, 21)
    assert.is_true(done:wait(2))
    assert.same({ ctx, true, 42, "two", n = 4 }, got)
    assert.is_thread(body_co)
    assert.equal(body_co, after_co)      -- in the same task
  end)

  it("spawn_then hands after the error and a traceback of where it was "
     .. "raised, after the body's __close handlers ran", function()
    local got, closed_first
    local done = threading.Event()
    local closed = false
    local function deep_failure()
      error({ name = "Deliberate" })
    end
    task.spawn_then(function(...)
      closed_first = closed
      got = table.pack(...)
      done:set()
    end, "ctx", function()
      local _ <close> = setmetatable({}, {
        __close = function() closed = true end })
      time.sleep(0.01)
      deep_failure()
    end)
    assert.is_true(done:wait(2))
    assert.equal(4, got.n)
    assert.equal("ctx", got[1])
    assert.is_false(got[2])
    assert.equal("Deliberate", got[3].name)
    assert.is_string(got[4])
    assert.truthy(got[4]:find("stack traceback:", 1, true))
    assert.truthy(got[4]:find("deep_failure", 1, true))
    assert.is_true(closed_first)
  end)

  it("spawn_then: an error raised by a __close handler replaces the "
     .. "body's", function()
    local got
    local done = threading.Event()
    task.spawn_then(function(...)
      got = table.pack(...)
      done:set()
    end, nil, function()
      local _ <close> = setmetatable({}, {
        __close = function() error("from __close", 0) end })
      error("from the body", 0)
    end)
    assert.is_true(done:wait(2))
    assert.is_false(got[2])
    assert.equal("from __close", got[3])
  end)

  it("spawn_then: a string error reaches after as it was raised",
     function()
    local got
    local done = threading.Event()
    task.spawn_then(function(...)
      got = table.pack(...)
      done:set()
    end, 1, error, "plain message", 0)
    assert.is_true(done:wait(2))
    assert.same({ 1, false, "plain message" }, { got[1], got[2], got[3] })
  end)

  it("spawn_then checks its arguments", function()
    assert.has_error(function() task.spawn_then(nil, 1, print) end)
    assert.has_error(function() task.spawn_then(print, 1, nil) end)
  end)

  it("suspend and wakeup pass values between tasks", function()
    local co, got
    local done = threading.Event()
    task.spawn(function()
      co = task.current()
      got = table.pack(task.suspend(nil))
      done:set()
    end)
    time.sleep(0.01)
    assert.is_true(task.wakeup(co, "a", 42))
    assert.is_true(done:wait(2))
    assert.same({"a", 42, n = 2}, got)
  end)

  it("suspend returns false at its deadline", function()
    assert.is_false(task.suspend(task.now() + 20))
  end)
end)

describe("time.sleep", function()
  it("suspends only its task: sleepers overlap", function()
    local t0 = time.monotonic()
    local ths = {}
    for i = 1, 4 do ths[i] = start(time.sleep, 0.1) end
    time.sleep(0.1)
    for i = 1, 4 do ths[i]:join() end
    local dt = time.monotonic() - t0
    assert.is_true(dt >= 0.095, "too early: " .. dt)
    assert.is_true(dt < 0.35, "sleepers ran one after another: " .. dt)
  end)

  it("never wakes early", function()
    for _, t in ipairs{0.001, 0.01, 0.03} do
      local t0 = time.monotonic()
      time.sleep(t)
      assert.is_true(time.monotonic() - t0 >= t - 0.001, t)
    end
  end)

  it("sleep(0) lets other tasks run", function()
    local ran = false
    start(function() ran = true end)
    time.sleep(0)
    assert.is_true(ran)
  end)

  it("rejects a negative or non-number length as Python", function()
    assert.equal("ValueError", raises(time.sleep, -1).name)
    assert.equal("TypeError", raises(time.sleep, "1").name)
  end)

  it("time() is wall-clock seconds, monotonic() never goes back",
     function()
    assert.is_true(math.abs(time.time() - os.time()) < 2)
    local m1 = time.monotonic()
    local m2 = time.monotonic()
    assert.is_true(m2 >= m1)
    assert.is_true(time.perf_counter() >= m1)
  end)
end)

describe("coroutines inside a task", function()
  it("coroutine.wrap can call recv: the wait is forwarded", function()
    local a, b = socket.socketpair()
    local f = coroutine.wrap(function() return a:recv(10) end)
    start(function()
      time.sleep(0.02)
      b:sendall("xyz")
    end)
    assert.equal("xyz", f())
    a:close(); b:close()
  end)

  it("coroutine.resume forwards waits and keeps the coroutine's own yields",
     function()
    local a, b = socket.socketpair()
    local co = coroutine.create(function()
      coroutine.yield("first")
      local d = a:recv(10)               -- waits: forwarded to the task
      coroutine.yield(d)
      return "done"
    end)
    start(function()
      time.sleep(0.02)
      b:sendall("data")
    end)
    assert.same({true, "first"}, {coroutine.resume(co)})
    assert.same({true, "data"}, {coroutine.resume(co)})
    assert.same({true, "done"}, {coroutine.resume(co)})
    assert.equal("dead", coroutine.status(co))
    a:close(); b:close()
  end)

  it("a generator made with coroutine.wrap still works", function()
    local gen = coroutine.wrap(function()
      for i = 1, 3 do coroutine.yield(i) end
    end)
    assert.equal(1, gen())
    assert.equal(2, gen())
    assert.equal(3, gen())
  end)

  it("an error in a wrapped coroutine propagates", function()
    local f = coroutine.wrap(function() error({tag = "mine"}) end)
    local ok, err = pcall(f)
    assert.is_false(ok)
    assert.equal("mine", err.tag)
  end)

  -- Regression: Lua never initialises the main thread's extra space and
  -- every coroutine copies it, so task.current() read garbage inside a
  -- coroutine the script made (valgrind: uninitialised value in
  -- task_current). The runtime now clears it, and task.lua maps such a
  -- coroutine to the task that resumed it.
  it("task.current() inside a coroutine is the task that resumed it",
     function()
    local me = task.current()
    local co = coroutine.create(function() return task.current() end)
    local ok, inner = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal(me, inner)
  end)

  it("Event.wait, Lock.acquire and join work inside coroutine.wrap",
     function()
    local ev = threading.Event()
    local lk = threading.Lock()
    lk:acquire()
    start(function()
      time.sleep(0.02)
      ev:set()
      time.sleep(0.02)
      lk:release()
    end)
    local th = start(time.sleep, 0.01)
    local f = coroutine.wrap(function()
      local set = ev:wait(2)
      local got = lk:acquire(true, 2)
      th:join(2)
      return set, got, th:is_alive()
    end)
    assert.same({true, true, false}, {f()})
  end)

  it("a coroutine that waits, resumed where the task cannot yield, "
     .. "blocks instead of leaking the runtime's sentinel", function()
    local a, b = socket.socketpair()
    b:sendall("x")
    local co = coroutine.wrap(function()
      time.sleep(0.01)                   -- a wait inside the coroutine
      return a:recv(1)
    end)
    local got
    string.gsub("x", "x", function() got = co() end)
    assert.equal("x", got)
    a:close(); b:close()
  end)

  it("a bare coroutine.yield() in a task just yields a turn", function()
    local n = 0
    local th = start(function()
      for _ = 1, 10 do
        n = n + 1
        coroutine.yield()
      end
    end)
    coroutine.yield()
    local seen = n
    assert.is_true(seen >= 1 and seen < 10, seen)
    coroutine.yield()
    assert.is_true(n > seen)
    th:join(2)
    assert.equal(10, n)
  end)

  it("a wait where yielding is impossible blocks the process instead",
     function()
    local a, b = socket.socketpair()
    a:settimeout(0.05)
    -- A gsub callback cannot yield (C-call boundary): recv falls back to
    -- polling the fd, as outside any loop, and still times out.
    local err
    local t0 = time.monotonic()
    string.gsub("x", "x", function()
      err = select(2, pcall(a.recv, a, 1))
    end)
    assert.equal("TimeoutError", err.name)
    assert.is_true(time.monotonic() - t0 >= 0.045)
    b:sendall("ok")
    local got
    string.gsub("x", "x", function() got = a:recv(2) end)
    assert.equal("ok", got)
    a:close(); b:close()
  end)
end)

describe("input()", function()
  local moonsock_exe = require "moonsock_exe"

  it("reads stdin lines without stopping other tasks", function()
    local exe = moonsock_exe()
    local cmd = ("(sleep 0.2; printf 'alice\\r\\nbob\\ncarol') | "
                 .. "'%s' tests/lua/input_child.lua 2>&1"):format(exe)
    local p = io.popen(cmd)
    local out = p:read("a")
    local ok, how, code = p:close()
    assert.is_true(ok, ("%s %s: %s"):format(how, code, out))
    assert.matches("^name%? ", out)
    assert.matches("first=alice ticked=true\n", out, 1, true)
    assert.matches("second=bob\n", out, 1, true)
    assert.matches("third=carol\n", out, 1, true)
    assert.matches("eof=false EOFError: EOF when reading a line", out, 1,
                   true)
  end)

  it("a second task calling input() at once gets RuntimeError",
     function()
    local exe = moonsock_exe()
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write([[
      local threading, time = require "threading", require "time"
      local th = threading.Thread{target = function()
        print("thread got " .. input())
      end}
      th:start()
      time.sleep(0.05)
      local ok, e = pcall(input)
      print(ok, e.name)
    ]])
    f:close()
    local p = io.popen(("(sleep 0.3; echo line) | '%s' %s 2>&1")
                       :format(exe, script))
    local out = p:read("a")
    p:close()
    os.remove(script)
    assert.equal("false\tRuntimeError\nthread got line\n", out)
  end)

  it("raises EOFError at once on an empty stdin", function()
    local exe = moonsock_exe()
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write("local ok, e = pcall(input) print(ok, tostring(e))\n")
    f:close()
    local p = io.popen(("'%s' %s </dev/null 2>&1"):format(exe, script))
    local out = p:read("a")
    p:close()
    os.remove(script)
    assert.equal("false\tEOFError: EOF when reading a line\n", out)
  end)
end)
