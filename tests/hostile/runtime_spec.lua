-- runtime_spec.lua -- the task runtime under hostile conditions.
--
-- Issue 8, seen from Lua (the core's own tests cover the C side):
--   * a task that, woken in the same loop pass as another, closes its own
--     socket and the other task's, then opens a socket that reuses the
--     other's fd number: the other task gets EBADF, never the new
--     socket's readiness, and the new socket works;
--   * recv(0) is "", recv(-1) a ValueError, recv(2^40) allocates
--     nothing huge; wrong argument types raise errors naming the function;
--   * 1,000 repeating timers (sleeping tasks) fire on time under load;
--     huge timeouts (settimeout(1e12), sleep(1e12), math.huge) wait
--     instead of overflowing, and cost no CPU while they wait.
-- Fairness needs a client outside the process: tests/hostile/
-- test_fairness.py.

local socket = require "socket"
local threading = require "threading"
local time = require "time"
local task = require "moonsock.task"
local memcap = require "_moonsock.memcap"

local function start(f, ...)
  local th = threading.Thread{target = f, args = table.pack(...),
                              daemon = true}
  th:start()
  return th
end

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("closing and fd reuse within one pass", function()
  it("the other waiter gets EBADF, the new socket is unharmed", function()
    local a1, b1 = socket.socketpair()
    local a2, b2 = socket.socketpair()
    local mine = { a1, a2 }
    local winner, results = nil, {}
    local function reader(i)
      local ok, data = pcall(mine[i].recv, mine[i], 100)
      if winner == nil then
        winner = i
        -- Woken first: close my socket and the other's in this pass.
        local other = mine[3 - i]
        local oldfd = other:fileno()
        mine[i]:close()
        other:close()
        -- Reuse: the lowest free fd numbers are the ones just closed.
        local c, d = socket.socketpair()
        results.reused = c:fileno() == oldfd or d:fileno() == oldfd
        results.first = ok and data
        -- Nothing written to c: a stale event must not wake it.
        c:settimeout(0.2)
        local e = raises(c.recv, c, 100)
        results.stale = e.name
        d:sendall("fresh")
        c:settimeout(2)
        results.fresh = c:recv(100)
        c:close(); d:close()
      else
        results.second_ok, results.second = ok, data
      end
    end
    local t1, t2 = start(reader, 1), start(reader, 2)
    time.sleep(0.05)
    -- Both become readable before either runs: one loop pass.
    b1:send("one"); b2:send("two")
    t1:join(5); t2:join(5)
    assert.is_false(t1:is_alive() or t2:is_alive())
    assert.is_truthy(results.first)
    assert.is_true(results.reused)
    assert.equal("TimeoutError", results.stale)
    assert.equal("fresh", results.fresh)
    assert.is_false(results.second_ok)
    assert.equal(socket.errors.errno.EBADF, results.second.errno)
    b1:close(); b2:close()
  end)

  it("a task closing its own socket while another waits to write it",
     function()
    local a, b = socket.socketpair()
    a:setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    local err
    local writer = start(function()
      local ok, e = pcall(a.sendall, a, ("w"):rep(1 << 20))
      err = not ok and e
    end)
    time.sleep(0.05)
    a:close()                     -- the writer is blocked in sendall
    writer:join(2)
    assert.is_false(writer:is_alive())
    assert.equal("OSError", err.name)
    b:close()
  end)
end)

describe("recv arguments", function()
  local a, b
  before_each(function() a, b = socket.socketpair() end)
  after_each(function() a:close(); b:close() end)

  it("recv(0) is the empty string", function()
    assert.equal("", a:recv(0))
  end)

  it("recv(-1) is Python's ValueError naming recv", function()
    local e = raises(a.recv, a, -1)
    assert.equal("ValueError", e.name)
    assert.matches("recv", tostring(e), 1, true)
  end)

  it("recv(2^40) allocates nothing huge", function()
    b:sendall(("q"):rep(1000))
    local before = memcap.stats()
    local data = a:recv(1 << 40)
    assert.equal(1000, #data)
    if before then
      local after = memcap.stats()
      assert.is_true(after.peak - before.peak < 1 << 20,
                     "peak grew by " .. (after.peak - before.peak))
    end
  end)

  it("wrong argument types name the function", function()
    for _, case in ipairs{
      { "send", function() return a:send({}) end },
      { "sendall", function() return a:sendall(print) end },
      { "bind", function() return socket.socket():bind(42) end },
      { "family", function() return socket.socket("inet") end },
      { "shutdown", function() return a:shutdown("both") end },
    } do
      local e = raises(case[2])
      assert.matches(case[1], tostring(e), 1, true)
    end
    -- a buffer size of the wrong type is Python's TypeError
    assert.equal("TypeError", raises(a.recv, a, "many").name)
    assert.equal("TypeError", raises(a.recv, a, {}).name)
    assert.equal("TypeError", raises(a.settimeout, a, "1").name)
    assert.equal("ValueError", raises(a.settimeout, a, 0 / 0).name)
    assert.equal("ValueError", raises(time.sleep, 0 / 0).name)
  end)
end)

describe("timers", function()
  it("1,000 repeating timers fire on time under load", function()
    local N, PERIOD, ROUNDS = 1000, 0.05, 10
    local late, worst, fired = 0, 0, 0
    -- Load: an echo pair moving data the whole time.
    local x, y = socket.socketpair()
    local stop = false
    start(pcall, function()
      while not stop do
        local d = x:recv(65536)
        if d == "" then return end
        x:sendall(d)
      end
    end)
    start(pcall, function()
      local blob = ("L"):rep(65536)
      while not stop do
        y:sendall(blob)
        local n = 0
        while n < #blob do n = n + #y:recv(65536) end
      end
    end)
    local threads = {}
    local t0 = task.monotonic()
    for i = 1, N do
      threads[i] = start(function()
        local first = t0 + (i % 50) / 1000   -- spread over 50 ms
        for r = 1, ROUNDS do
          local due = first + r * PERIOD
          local now = task.monotonic()
          if due > now then time.sleep(due - now) end
          local lag = task.monotonic() - due
          if lag > worst then worst = lag end
          if lag > 0.1 then late = late + 1 end
          fired = fired + 1
        end
      end)
    end
    for i = 1, N do threads[i]:join(30) end
    stop = true
    y:close()
    x:close()
    local total = task.monotonic() - t0
    assert.equal(N * ROUNDS, fired)
    -- No drift: the schedule is absolute, so the whole run takes
    -- ROUNDS * PERIOD plus at most one late firing.
    assert.is_true(total < ROUNDS * PERIOD + 1.5,
                   ("took %.2fs"):format(total))
    assert.is_true(late < N * ROUNDS / 20,
                   ("%d of %d firings over 100 ms late (worst %.0f ms)")
                   :format(late, N * ROUNDS, worst * 1000))
  end)

  it("sleep(1e12) and sleep(math.huge) wait, idle, until the end",
     function()
    local woke = {}
    for _, s in ipairs{ 1e12, 1e300, math.huge } do
      start(function() time.sleep(s); woke[#woke + 1] = s end)
    end
    local c0 = os.clock()
    time.sleep(0.3)
    assert.equal(0, #woke)
    assert.is_true(os.clock() - c0 < 0.1, "the sleepers spin")
  end)

  it("settimeout(1e12) waits for data rather than timing out", function()
    local a, b = socket.socketpair()
    for _, t in ipairs{ 1e12, 1e300, math.huge } do
      a:settimeout(t)
      assert.equal(t, a:gettimeout())
      local got
      local th = start(function() got = a:recv(10) end)
      time.sleep(0.1)
      assert.is_nil(got)
      b:send("late")
      th:join(2)
      assert.equal("late", got)
    end
    a:close(); b:close()
  end)

  it("a waiting huge timeout is cancelled by close", function()
    local a, b = socket.socketpair()
    a:settimeout(1e12)
    local err
    local th = start(function()
      local ok, e = pcall(a.recv, a, 10)
      err = not ok and e
    end)
    time.sleep(0.05)
    a:close()
    th:join(2)
    assert.equal("OSError", err.name)
    b:close()
  end)
end)
