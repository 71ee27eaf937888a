-- bytearray_spec.lua -- bytearray, memoryview, bytes and recv_into,
-- against Python 3's behaviour, on real socket pairs and TCP over
-- loopback. Runs as a task (tests/run_busted.lua), so a blocking call
-- suspends only this task and a green thread can play the other end.

local socket = require "socket"
local threading = require "threading"

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("bytearray, memoryview, bytes", function()
  it("make zeroed, copied and empty buffers", function()
    assert.equal(16, #bytearray(16))
    assert.equal(("\0"):rep(16), bytes(bytearray(16)))
    assert.equal("abc", bytes(bytearray("abc")))
    assert.equal(0, #bytearray())
    assert.equal("\0\0\0", bytes(3))
    assert.equal("xyz", bytes("xyz"))
    assert.equal("", bytes())
    local a = bytearray("hello")
    local b = bytearray(a)                 -- a copy, not a view
    assert.equal("hello", bytes(b))
    assert.matches("bytearray", tostring(a))
  end)

  it("reject what Python rejects", function()
    assert.matches("negative count", tostring(raises(bytearray, -1)))
    assert.matches("negative count", tostring(raises(bytes, -1)))
    assert.is_false(pcall(bytearray, {}))
    assert.is_false(pcall(memoryview, 5))
    assert.is_false(pcall(bytes, true))
  end)

  it("slices a view as string.sub does, without copying", function()
    local s = "0123456789"
    local view = memoryview(bytearray(s))
    for i = -12, 12 do
      for j = -12, 12 do
        assert.equal(s:sub(i, j), view:sub(i, j):tobytes(),
                     ("sub(%d, %d)"):format(i, j))
      end
      assert.equal(s:sub(i), bytes(view:sub(i)))
    end
    local buf = bytearray(4)
    local part = memoryview(buf):sub(2, 3)
    assert.equal(2, #part)
    assert.equal(2, part.nbytes)
    assert.is_false(part.readonly)
    assert.equal(buf, part.obj)
  end)

  it("keeps the viewed object alive", function()
    local view = memoryview(bytearray("kept")):sub(2)
    collectgarbage()
    collectgarbage()
    assert.equal("ept", view:tobytes())
    local sview = memoryview("a" .. ("b"):rep(100))
    collectgarbage()
    assert.equal(("b"):rep(100), sview:sub(2):tobytes())
    assert.is_true(sview.readonly)
  end)
end)

describe("recv_into", function()
  it("fills the buffer and returns the count; 0 at end of stream",
     function()
    local a, b = socket.socketpair()
    local buf = bytearray(8)
    a:sendall("hi")
    assert.equal(2, b:recv_into(buf))
    assert.equal("hi\0\0\0\0\0\0", bytes(buf))
    a:sendall("0123456789")
    assert.equal(8, b:recv_into(buf))      -- at most the buffer's size
    assert.equal("01234567", bytes(buf))
    assert.equal(1, b:recv_into(buf, 1))   -- nbytes
    assert.equal("81234567", bytes(buf))
    assert.equal(1, b:recv_into(buf, 0))   -- 0: the whole buffer
    assert.equal("91234567", bytes(buf))
    a:close()
    assert.equal(0, b:recv_into(buf))
    b:close()
  end)

  it("reads into a view at the view's start", function()
    local a, b = socket.socketpair()
    local buf = bytearray("........")
    a:sendall("xyz")
    assert.equal(3, b:recv_into(memoryview(buf):sub(4)))
    assert.equal("...xyz..", bytes(buf))
    a:close(); b:close()
  end)

  it("waits in a task until data comes", function()
    local a, b = socket.socketpair()
    local t = threading.Thread{target = function()
      require("time").sleep(0.05)
      a:sendall("late")
    end}
    t:start()
    local buf = bytearray(16)
    assert.equal(4, b:recv_into(buf))
    assert.equal("late", bytes(memoryview(buf):sub(1, 4)))
    t:join()
    a:close(); b:close()
  end)

  it("honours timeouts and non-blocking sockets", function()
    local a, b = socket.socketpair()
    b:settimeout(0.05)
    assert.equal("TimeoutError", raises(b.recv_into, b, bytearray(4)).name)
    b:setblocking(false)
    assert.equal("BlockingIOError",
                 raises(b.recv_into, b, bytearray(4)).name)
    a:sendall("ok")
    b:settimeout(1)
    local buf = bytearray(4)
    assert.equal(2, b:recv_into(buf))
    a:close(); b:close()
  end)

  it("raises Python's errors for bad arguments", function()
    local a, b = socket.socketpair()
    local buf = bytearray(4)
    local e = raises(b.recv_into, b, buf, 5)
    assert.equal("ValueError", e.name)
    assert.equal("buffer too small for requested bytes", e.message)
    e = raises(b.recv_into, b, buf, -1)
    assert.equal("ValueError", e.name)
    assert.equal("negative buffersize in recv_into", e.message)
    e = raises(b.recv_into, b, "not a buffer")
    assert.equal("TypeError", e.name)
    -- Python 3.11: "... argument 1 must be read-write bytes-like object,
    -- not str"; a Lua string is named as Lua names it.
    assert.equal("recv_into() argument 1 must be read-write "
                 .. "bytes-like object, not string", e.message)
    e = raises(b.recv_into, b, memoryview("read-only"))
    assert.equal("TypeError", e.name)
    assert.matches("read%-only memoryview", e.message)
    b:close()
    e = raises(b.recv_into, b, buf)
    assert.equal("OSError", e.name)
    a:close()
  end)
end)

describe("send and sendall take buffers", function()
  it("send a bytearray, a view and a slice of one", function()
    local a, b = socket.socketpair()
    a:sendall(bytearray("one,"))
    a:sendall(memoryview(bytearray("two,")))
    a:sendall(memoryview(bytearray("xthree,x")):sub(2, -2))
    assert.equal(5, a:send(memoryview("four,")))
    a:close()
    local got = {}
    repeat
      local d = b:recv(100)
      got[#got + 1] = d
    until d == ""
    assert.equal("one,two,three,four,", table.concat(got))
    b:close()
  end)

  it("moves 8 MiB through recv_into and sendall over TCP, every byte",
     function()
    local srv = socket.create_server({"127.0.0.1", 0})
    local c = socket.create_connection(srv:getsockname())
    local s = srv:accept()
    local pattern = {}
    for i = 0, 255 do pattern[#pattern + 1] = string.char(i) end
    local block = table.concat(pattern):rep(256)          -- 64 KiB
    local echo = threading.Thread{target = function()
      local buf = bytearray(100000)             -- not a block multiple
      local view = memoryview(buf)
      while true do
        local n = s:recv_into(buf)
        if n == 0 then break end
        s:sendall(view:sub(1, n))
      end
      s:close()
    end}
    echo:start()
    local writer = threading.Thread{target = function()
      for _ = 1, 128 do c:sendall(bytearray(block)) end
      c:shutdown(socket.SHUT_WR)
    end}
    writer:start()
    local got, total = {}, 0
    while true do
      local d = c:recv(262144)
      if d == "" then break end
      got[#got + 1] = d
      total = total + #d
    end
    assert.equal(128 * #block, total)
    assert.is_true(table.concat(got) == block:rep(128))
    writer:join(); echo:join()
    c:close(); srv:close()
  end)

  it("refuses other types with TypeError", function()
    local a, b = socket.socketpair()
    assert.equal("TypeError", raises(a.sendall, a, {}).name)
    assert.is_false(pcall(a.send, a, 42.5))
    a:close(); b:close()
  end)
end)
