-- threading_spec.lua -- Python's threading module with green threads.
--
-- Thread (target, args, daemon, name, start, join(timeout), is_alive,
-- run overridden), Event (set, is_set, clear, wait(timeout)) and Lock
-- (acquire blocking, non-blocking and with a timeout; release; locked)
-- against Python 3's behaviour. Each Thread is a task, so the spec (a
-- task too) waits in join() or sleep() while the others run. Whether the
-- program waits for non-daemon threads is checked in a child moonsock.

local threading = require "threading"
local time = require "time"

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("threading.Thread", function()
  it("runs target with args once started", function()
    local got
    local th = threading.Thread{target = function(...)
      got = table.pack(...)
    end, args = {1, "two", 3}}
    assert.is_false(th:is_alive())
    assert.is_nil(got)
    th:start()
    assert.equal(0, select("#", th:join()))
    assert.same({1, "two", 3, n = 3}, got)
    assert.is_false(th:is_alive())
  end)

  it("passes nil holes when args has n (table.pack)", function()
    local got
    local th = threading.Thread{target = function(...)
      got = select("#", ...)
    end, args = table.pack(nil, nil, 3)}
    th:start()
    th:join()
    assert.equal(3, got)
  end)

  it("has Python's defaults: not daemon, named Thread-N", function()
    local th = threading.Thread{target = function() end}
    assert.is_false(th.daemon)
    assert.matches("^Thread%-%d+$", th.name)
    local named = threading.Thread{name = "worker", daemon = true}
    assert.equal("worker", named.name)
    assert.is_true(named.daemon)
  end)

  it("is alive while running; join(timeout) returns when time is up",
     function()
    local release = threading.Event()
    local th = threading.Thread{target = function() release:wait() end}
    th:start()
    time.sleep(0)
    assert.is_true(th:is_alive())
    local t0 = time.monotonic()
    th:join(0.05)
    local dt = time.monotonic() - t0
    assert.is_true(dt >= 0.045 and dt < 1, dt)
    assert.is_true(th:is_alive())
    release:set()
    th:join(2)
    assert.is_false(th:is_alive())
  end)

  it("runs threads concurrently", function()
    local order = {}
    local function worker(name, delay)
      time.sleep(delay)
      order[#order + 1] = name
    end
    local slow = threading.Thread{target = worker, args = {"slow", 0.06}}
    local fast = threading.Thread{target = worker, args = {"fast", 0.01}}
    local t0 = time.monotonic()
    slow:start(); fast:start()
    slow:join(); fast:join()
    assert.same({"fast", "slow"}, order)
    assert.is_true(time.monotonic() - t0 < 0.5)
  end)

  it("calls an overridden run instead of target", function()
    local th = threading.Thread{}
    local ran = false
    function th:run() ran = self.name end
    th:start()
    th:join()
    assert.equal(th.name, ran)
  end)

  it("can be started only once", function()
    local th = threading.Thread{target = function() end}
    th:start()
    local err = raises(th.start, th)
    assert.equal("RuntimeError", err.name)
    assert.equal("RuntimeError: threads can only be started once",
                 tostring(err))
    th:join()
  end)

  it("cannot be joined before start or from itself", function()
    local th = threading.Thread{target = function() end}
    assert.equal("RuntimeError", raises(th.join, th).name)
    local self_err
    local me
    me = threading.Thread{target = function()
      self_err = select(2, pcall(me.join, me))
    end}
    me:start()
    me:join(2)
    assert.equal("RuntimeError", self_err.name)
    assert.matches("cannot join current thread", self_err.message)
  end)

  it("an exception ends its thread only; join still returns", function()
    local th = threading.Thread{name = "failing", target = function()
      error("deliberate failure, ignore this log")
    end}
    th:start()
    th:join(2)
    assert.is_false(th:is_alive())
  end)

  describe("and the program's end", function()
    local moonsock_exe = require "moonsock_exe"

    local function run(src)
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write(src)
      f:close()
      local t0 = time.monotonic()
      local p = io.popen(("'%s' %s 2>&1"):format(moonsock_exe(), script))
      local out = p:read("a")
      local ok = p:close()
      os.remove(script)
      return out, time.monotonic() - t0, ok
    end

    it("waits for non-daemon threads after the main chunk returns",
       function()
      local out, _, ok = run([[
        local threading = require "threading"
        local time = require "time"
        threading.Thread{target = function()
          time.sleep(0.05)
          print("worker done")
        end}:start()
        print("main done")
      ]])
      assert.is_true(ok)
      assert.equal("main done\nworker done\n", out)
    end)

    it("does not wait for daemon threads", function()
      local out, dt, ok = run([[
        local threading = require "threading"
        local time = require "time"
        threading.Thread{daemon = true, target = function()
          time.sleep(30)
          print("never")
        end}:start()
        print("main done")
      ]])
      assert.is_true(ok)
      assert.equal("main done\n", out)
      assert.is_true(dt < 5, dt)
    end)
  end)
end)

describe("threading.Event", function()
  it("starts clear; set, is_set and clear", function()
    local ev = threading.Event()
    assert.is_false(ev:is_set())
    ev:set()
    assert.is_true(ev:is_set())
    ev:clear()
    assert.is_false(ev:is_set())
  end)

  it("wait(timeout) returns false after about timeout", function()
    local ev = threading.Event()
    local t0 = time.monotonic()
    assert.is_false(ev:wait(0.05))
    local dt = time.monotonic() - t0
    assert.is_true(dt >= 0.045 and dt < 1, dt)
  end)

  it("wait returns true at once when set", function()
    local ev = threading.Event()
    ev:set()
    assert.is_true(ev:wait())
    assert.is_true(ev:wait(0))
  end)

  it("set wakes every waiter", function()
    local ev = threading.Event()
    local woke = 0
    local ths = {}
    for i = 1, 5 do
      ths[i] = threading.Thread{target = function()
        if ev:wait(5) then woke = woke + 1 end
      end}
      ths[i]:start()
    end
    time.sleep(0.01)
    assert.equal(0, woke)
    local t0 = time.monotonic()
    ev:set()
    for i = 1, 5 do ths[i]:join() end
    assert.equal(5, woke)
    assert.is_true(time.monotonic() - t0 < 1)
  end)

  it("a waiter woken by set returns true even if clear came first",
     function()
    local ev = threading.Event()
    local got
    local th = threading.Thread{target = function() got = ev:wait(5) end}
    th:start()
    time.sleep(0.01)
    local t0 = time.monotonic()
    ev:set()
    ev:clear()                           -- a pulse, as Python allows
    th:join(2)
    assert.is_true(got)
    assert.is_true(time.monotonic() - t0 < 1)
  end)

  it("wait() without timeout waits until set", function()
    local ev = threading.Event()
    threading.Thread{target = function()
      time.sleep(0.03)
      ev:set()
    end}:start()
    local t0 = time.monotonic()
    assert.is_true(ev:wait())
    assert.is_true(time.monotonic() - t0 >= 0.025)
  end)
end)

describe("threading.Lock", function()
  it("acquire, locked, release", function()
    local lk = threading.Lock()
    assert.is_false(lk:locked())
    assert.is_true(lk:acquire())
    assert.is_true(lk:locked())
    lk:release()
    assert.is_false(lk:locked())
  end)

  it("non-blocking acquire of a held lock returns false at once",
     function()
    local lk = threading.Lock()
    lk:acquire()
    local t0 = time.monotonic()
    assert.is_false(lk:acquire(false))
    assert.is_true(time.monotonic() - t0 < 0.01)
    lk:release()
  end)

  it("acquire with a timeout returns false after about timeout",
     function()
    local lk = threading.Lock()
    lk:acquire()
    local t0 = time.monotonic()
    assert.is_false(lk:acquire(true, 0.05))
    local dt = time.monotonic() - t0
    assert.is_true(dt >= 0.045 and dt < 1, dt)
    lk:release()
  end)

  it("a waiting thread gets the lock when it is released", function()
    local lk = threading.Lock()
    lk:acquire()
    local got = false
    local th = threading.Thread{target = function()
      got = lk:acquire()
      lk:release()
    end}
    th:start()
    time.sleep(0.02)
    assert.is_false(got)
    lk:release()
    th:join(2)
    assert.is_true(got)
    assert.is_false(lk:locked())
  end)

  it("serialises a critical section across threads", function()
    local lk = threading.Lock()
    local inside, max_inside = 0, 0
    local ths = {}
    for i = 1, 5 do
      ths[i] = threading.Thread{target = function()
        for _ = 1, 3 do
          lk:acquire()
          inside = inside + 1
          if inside > max_inside then max_inside = inside end
          time.sleep(0.002)
          inside = inside - 1
          lk:release()
        end
      end}
      ths[i]:start()
    end
    for i = 1, 5 do ths[i]:join(5) end
    assert.equal(1, max_inside)
    assert.equal(0, inside)
  end)

  it("releasing an unlocked lock raises RuntimeError", function()
    local lk = threading.Lock()
    local err = raises(lk.release, lk)
    assert.equal("RuntimeError", err.name)
    assert.equal("RuntimeError: release unlocked lock", tostring(err))
  end)

  it("a <close> variable releases it, like Python's with", function()
    local lk = threading.Lock()
    do
      lk:acquire()
      local held <close> = lk             -- luacheck: ignore held
      assert.is_true(lk:locked())
    end
    assert.is_false(lk:locked())
  end)
end)
