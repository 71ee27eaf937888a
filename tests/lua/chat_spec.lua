-- chat_spec.lua -- scripts/chat.lua driven directly, over socket pairs.
--
-- The text cleaning and name rules as functions; then the handler table
-- itself, served by a small stand-in for the server (state, timeout,
-- handler) with one end of socket.socketpair() per client, as a handler
-- spec should: fan-out, the quiet period that ends a line sent without a
-- newline, the line limit, the idle timeout, and a swap of the handler
-- table under live connections, which is what a hot reload does.

local socket = require "socket"
local threading = require "threading"
local time = require "time"

local Chat = require "chat"

-- A server stand-in: instances look their methods up through
-- server.handler at every call, as serve.lua's do.
local function new_server(fields)
  local handler = setmetatable(fields or {}, { __index = Chat })
  local server = { state = {}, handler = handler, timeout = nil }
  server.instance_mt = {
    __index = function(_, k) return server.handler[k] end,
  }
  return server
end

local port = 40000
-- connect(server) -> the client's end of a pair; the handler runs on the
-- other end in a green thread, setup/handle/finish as serve.lua calls.
local function connect(server)
  local a, b = socket.socketpair()
  port = port + 1
  local h = setmetatable({ request = a, client_address = { "127.0.0.1",
                                                           port },
                           server = server }, server.instance_mt)
  threading.Thread { daemon = true, target = function()
    local ok = pcall(h.setup, h)
    if ok then
      pcall(h.handle, h)
      pcall(h.finish, h)
    end
    a:close()
  end }:start()
  b:settimeout(2)
  return { sock = b, buf = "" }
end

-- line(c[, timeout]) -> the next line, or nil at end of stream / timeout.
local function line(c, timeout)
  c.sock:settimeout(timeout or 2)
  while not c.buf:find("\n", 1, true) do
    local ok, data = pcall(c.sock.recv, c.sock, 4096)
    if not ok or data == "" then return nil end
    c.buf = c.buf .. data
  end
  local l, rest = c.buf:match("^(.-)\n(.*)$")
  c.buf = rest
  return l
end

-- expect(c, pattern) -> the first line that contains pattern (plain).
local function expect(c, pattern)
  local seen = {}
  while true do
    local l = line(c)
    if l == nil then
      error(("expected %q, got %s"):format(pattern,
                                           table.concat(seen, " | ")), 2)
    end
    if l:find(pattern, 1, true) then return l end
    seen[#seen + 1] = l
  end
end

describe("chat.clean", function()
  local clean = Chat.clean
  it("leaves printable ASCII and valid UTF-8 alone", function()
    assert.equal("hello, world", clean("hello, world"))
    assert.equal("caf\u{e9} \u{4f60}\u{597d} \u{1F600}",
                 clean("caf\u{e9} \u{4f60}\u{597d} \u{1F600}"))
  end)
  it("removes control characters, line breaks and bidi controls",
     function()
    assert.equal("abc", clean("a\rb\0c"))
    assert.equal("a b", clean("a\tb"))
    assert.equal("ab", clean("a\u{85}b"))          -- NEL
    assert.equal("ab", clean("a\u{2028}b"))        -- line separator
    assert.equal("evil", clean("\u{202e}evil"))    -- right-to-left override
    assert.equal("x", clean("\u{2066}x\u{2069}"))
  end)
  it("replaces invalid UTF-8 with U+FFFD", function()
    assert.equal("a\u{fffd}b", clean("a\xffb"))
    assert.equal("\u{fffd}\u{fffd}", clean("\xc0\xaf"))   -- overlong "/"
    assert.equal("\u{fffd}\u{fffd}\u{fffd}",
                 clean("\xed\xa0\x80"))                    -- surrogate
    assert.equal("x\u{fffd}\u{fffd}", clean("x\xe4\xbd"))  -- one per byte
  end)
end)

describe("chat.valid_name", function()
  it("takes ASCII letters first, then letters, digits, _ and -", function()
    assert.is_true(Chat.valid_name("alice", 16))
    assert.is_true(Chat.valid_name("a_b-9", 16))
    for _, bad in ipairs { "", "9lives", "bob: x", "a b", "\u{e9}t\u{e9}",
                           "*", ("x"):rep(17), "-x" } do
      assert.is_false(Chat.valid_name(bad, 16), bad)
    end
  end)
end)

describe("chat handler", function()
  it("greets, then sends each message to the whole room", function()
    local server = new_server { greet_delay = 0 }
    local a = connect(server)
    assert.truthy(expect(a, "Welcome"):find("guest1", 1, true))
    local b = connect(server)
    expect(a, "*** guest2 joined lobby")
    b.sock:sendall("hi all\n")
    assert.equal("guest2: hi all", expect(a, "guest2:"))
    assert.equal("guest2: hi all", expect(b, "guest2:"))
    a.sock:close()
    assert.equal("*** guest1 left lobby (connection closed)",
                 expect(b, "left"))
    b.sock:close()
  end)

  it("ends a line sent without newline after the quiet period", function()
    local server = new_server { quiet = 0.1, greet_delay = 5 }
    local c = connect(server)
    local t0 = time.monotonic()
    c.sock:sendall("no newline")
    local welcome = line(c)
    assert.truthy(welcome:find("Welcome", 1, true))
    assert.equal("guest1: no newline", line(c))
    local took = time.monotonic() - t0
    assert.is_true(took >= 0.1 and took < 1.5, took)
    c.sock:close()
  end)

  it("refuses a line over max_line and closes", function()
    local server = new_server { max_line = 64, greet_delay = 0 }
    local c = connect(server)
    c.sock:sendall(("x"):rep(200))
    assert.truthy(expect(c, "error"):find("line too long", 1, true))
    assert.is_nil(line(c))
    c.sock:close()
  end)

  it("closes an idle connection with a notice", function()
    local server = new_server { greet_delay = 0 }
    server.timeout = 0.2
    local c = connect(server)
    local t0 = time.monotonic()
    assert.truthy(expect(c, "closing"):find("idle", 1, true))
    assert.is_nil(line(c))
    assert.is_true(time.monotonic() - t0 >= 0.2)
    c.sock:close()
  end)

  it("keeps everyone when the handler table is swapped (reload)",
     function()
    local server = new_server { greet_delay = 0 }
    local a, b = connect(server), connect(server)
    expect(a, "guest2 joined")
    b.sock:sendall("/nick bob\n")
    expect(a, "is now known as bob")
    -- A second copy of the script: new functions, same state.
    local v2 = assert(loadfile("scripts/chat.lua"))()
    local calls = 0
    local on_line = v2.on_line
    v2.on_line = function(self, l)
      calls = calls + 1
      return on_line(self, l)
    end
    v2.greet_delay = 0
    server.handler = v2
    b.sock:sendall("after reload\n")
    assert.equal("bob: after reload", expect(a, "bob:"))
    assert.equal(1, calls)
    a.sock:sendall("/who\n")
    assert.equal("*** in lobby (2): guest1, bob", expect(a, "in lobby"))
    a.sock:close()
    b.sock:close()
  end)
end)
