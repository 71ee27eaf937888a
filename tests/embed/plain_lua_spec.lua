-- plain_lua_spec.lua -- moonsock's modules in a plain lua5.4 (moonsock.so).
--
-- Run by busted under lua5.4 with the build's lua/ directory on cpath
-- (tests/embed/CMakeLists.txt). No moonsock runtime exists here, so every
-- call that would wait blocks the process, as in Python; the specs check
-- that, that the Python-style API is the same one handlers get, and that
-- nothing takes LuaSocket's name `socket`.

local moonsock = require "moonsock"

describe("require 'moonsock' in a plain lua5.4", function()
  it("knows its version and modules", function()
    assert.matches("^%d+%.%d+%.%d+$", moonsock.version)
    local names = table.concat(moonsock.modules(), " ")
    for _, m in ipairs { "socket", "errors", "task", "time", "threading" } do
      assert.truthy((" " .. names .. " "):find(" " .. m .. " ", 1, true), m)
    end
  end)

  it("loads modules on first use, once", function()
    local socket = moonsock.socket
    assert.equal(socket, require "moonsock.socket")
    assert.equal(socket, moonsock.socket)
    assert.is_nil(moonsock.no_such_module)
  end)

  it("leaves the name `socket` to LuaSocket", function()
    assert.is_nil(package.preload.socket)
    local ok, luasocket = pcall(require, "socket")
    if ok then
      assert.not_equal(moonsock.socket, luasocket)
      assert.is_nil(luasocket.socketpair)   -- LuaSocket has no such thing
    end
  end)

  it("runs without a task runtime", function()
    assert.is_false(require("moonsock.task").active)
  end)
end)

describe("moonsock.socket blocking the process", function()
  local socket = moonsock.socket

  it("sends and receives over a socketpair", function()
    local a, b = socket.socketpair()
    a:sendall("hello")
    assert.equal("hello", b:recv(1024))
    a:close()
    assert.equal("", b:recv(1024))          -- Python's b"" at EOF
    b:close()
  end)

  it("raises TimeoutError after settimeout seconds", function()
    local a, b = socket.socketpair()
    local _ <close> = a
    local _ <close> = b
    b:settimeout(0.05)
    local t0 = moonsock.time.monotonic()
    local ok, err = pcall(b.recv, b, 10)
    local took = moonsock.time.monotonic() - t0
    assert.is_false(ok)
    assert.equal("TimeoutError", err.name)
    assert.is_true(took >= 0.045, tostring(took))
    assert.is_true(took < 2, tostring(took))
  end)

  it("raises BlockingIOError in non-blocking mode", function()
    local a, b = socket.socketpair()
    local _ <close> = a
    local _ <close> = b
    b:setblocking(false)
    local ok, err = pcall(b.recv, b, 10)
    assert.is_false(ok)
    assert.equal("BlockingIOError", err.name)
    assert.is_true(moonsock.errors.isinstance(err, "OSError"))
  end)

  it("serves a client over loopback TCP", function()
    local srv <close> = socket.create_server({ "127.0.0.1", 0 })
    local port = srv:getsockname()[2]
    local cli <close> = socket.create_connection({ "127.0.0.1", port })
    local conn <close>, addr = srv:accept()
    assert.equal("127.0.0.1", addr[1])
    cli:sendall("ping")
    assert.equal("ping", conn:recv(4))
    conn:sendall("pong")
    assert.equal("pong", cli:recv(4))
  end)

  it("reports connection refused like Python", function()
    local probe = socket.create_server({ "127.0.0.1", 0 })
    local port = probe:getsockname()[2]
    probe:close()
    local s <close> = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    local ok, err = pcall(s.connect, s, { "127.0.0.1", port })
    assert.is_false(ok)
    assert.equal("ConnectionRefusedError", err.name)
    assert.matches("Connection refused", tostring(err))
  end)
end)

describe("moonsock.time", function()
  it("sleeps by blocking the process", function()
    local t0 = moonsock.time.monotonic()
    moonsock.time.sleep(0.05)
    assert.is_true(moonsock.time.monotonic() - t0 >= 0.045)
  end)
end)

describe("moonsock.threading", function()
  it("says green threads need the runtime", function()
    local ok, err = pcall(function()
      moonsock.threading.Thread { target = function() end }:start()
    end)
    assert.is_false(ok)
    assert.matches("runtime", tostring(err))
  end)
end)
