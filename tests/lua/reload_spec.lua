-- reload_spec.lua -- hot reload of a served handler script, in process.
--
-- Each test writes a handler script (and sometimes a module beside it)
-- into a fresh temporary directory, serves it with serve.start() as
-- `moonsock SCRIPT` would (minus the signal handlers), talks to it over
-- loopback, and rewrites it: through server:reload(), and through the
-- file watches (atomic rename, in-place write, mtime polling). Checked:
-- the transaction (a broken version is refused with file:line and the old
-- one keeps serving), live connections calling new methods at their next
-- call, server.state, the reload hook, the listener left open, and the
-- version/reloads/last_error report.

local socket = require "socket"
local serve = require "moonsock.serve"
local time = require "time"

local function mkdtemp()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p '" .. p .. "'"))
  return p
end

local function rmtree(dir)
  os.execute("rm -rf '" .. dir .. "'")
end

-- write(path, text[, mode]): "rename" writes a temp file and renames it
-- over path (what most editors do); "inplace" truncates and rewrites.
local function write(path, text, mode)
  if mode == "inplace" then
    local f = assert(io.open(path, "r+b") or io.open(path, "wb"))
    f:seek("set", 0)
    f:write(text)
    f:close()
    -- r+ does not truncate: pad shorter text with a comment line.
    local g = assert(io.open(path, "rb"))
    local now = g:read("a")
    g:close()
    if #now ~= #text then
      local h = assert(io.open(path, "wb"))
      h:write(text)
      h:close()
    end
    return
  end
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

-- A line protocol handler whose answers say which version answered.
-- handle() is the loop a live connection never leaves; answer() is the
-- method a reload must reach.
local function handler_src(tag, extra)
  return ([[
local H = {}
%s
function H:handle()
  local f = self.request:makefile("rb")
  while true do
    local line = f:readline()
    if line == "" then return end
    self:answer(line)
  end
end
function H:answer(line)
  local st = self.server.state
  st.count = (st.count or 0) + 1
  self.request:sendall(("%s %%d %%s"):format(st.count, line))
end
return H
]]):format(extra or "", tag)
end

local function wait_until(cond, timeout)
  local deadline = time.monotonic() + (timeout or 5)
  while time.monotonic() < deadline do
    if cond() then return true end
    time.sleep(0.01)
  end
  return cond()
end

local dir, path, server, saved_path

local function start(src, options)
  dir = mkdtemp()
  path = dir .. "/handler.lua"
  write(path, src)
  saved_path = package.path
  package.path = dir .. "/?.lua;" .. package.path
  local handler = dofile(path)
  options = options or {}
  options.listen = options.listen or { "127.0.0.1:0" }
  server = serve.start(handler, path, options, { n = 0 })
  return server
end

local function client()
  local c = socket.create_connection(server.server_address, 5)
  local f = c:makefile("rb")
  return {
    sock = c,
    ask = function(msg)
      c:sendall(msg .. "\n")
      return f:readline()
    end,
  }
end

after_each(function()
  if server then server:stop(0) end
  server = nil
  if saved_path then package.path = saved_path end
  if dir then rmtree(dir) end
  dir = nil
end)

describe("reload", function()
  it("switches live connections at their next method call", function()
    start(handler_src("v1"))
    local c = client()
    assert.equal("v1 1 a\n", c.ask("a"))
    local fd = server.socket:fileno()
    write(path, handler_src("v2"))
    local ok, version = server:reload()
    assert.is_true(ok)
    assert.equal(2, version)
    assert.equal("v2 2 b\n", c.ask("b"))       -- same connection, new code
    local d = client()
    assert.equal("v2 3 c\n", d.ask("c"))       -- new connection, new code
    assert.equal(fd, server.socket:fileno())   -- listener untouched
    assert.equal(2, server.version)
    assert.equal(1, server.reloads)
    assert.equal(3, server.state.count)
    local st = server:status()
    assert.equal(2, st.version)
    assert.equal(1, st.reloads)
    assert.equal(0, st.failed_reloads)
    assert.is_true(st.last_reload_ok)
    c.sock:close()
    d.sock:close()
  end)

  it("refuses a syntax error with file:line; the old version serves",
     function()
    start(handler_src("v1"))
    local c = client()
    assert.equal("v1 1 a\n", c.ask("a"))
    write(path, "local H = {\n  handle = function() end\n  oops\n}\n")
    local ok, err = server:reload()
    assert.is_false(ok)
    assert.matches("handler%.lua:3:", err)
    assert.equal(1, server.version)
    assert.equal(1, server.failed_reloads)
    assert.equal(err, server.last_error)
    assert.is_false(server.last_reload_ok)
    assert.equal("v1 2 b\n", c.ask("b"))
    -- The next good edit is picked up normally.
    write(path, handler_src("v3"))
    assert.is_true(server:reload())
    assert.equal("v3 3 c\n", c.ask("c"))
    assert.equal(2, server.version)
    assert.is_true(server.last_reload_ok)
    assert.equal(err, server.last_error)       -- kept for the record
    c.sock:close()
  end)

  it("refuses a runtime error at load, with file:line", function()
    start(handler_src("v1"))
    local c = client()
    write(path, "local x = nil\nlocal H = {}\nreturn x.field\n")
    local ok, err = server:reload()
    assert.is_false(ok)
    assert.matches("handler%.lua:3:", err)
    assert.matches("stack traceback", err)
    assert.equal("v1 1 a\n", c.ask("a"))
    c.sock:close()
  end)

  it("refuses what is not a handler table", function()
    start(handler_src("v1"))
    for _, src in ipairs{ "return 42\n", "return {}\n", "return nil\n" } do
      write(path, src)
      local ok, err = server:reload()
      assert.is_false(ok)
      assert.matches("handle function", err)
    end
    assert.equal(3, server.failed_reloads)
    assert.equal(1, server.version)
  end)

  it("refuses a switch between TCP and UDP", function()
    start(handler_src("v1"))
    write(path, handler_src("v2", "H.socket_type = 'udp'"))
    local ok, err = server:reload()
    assert.is_false(ok)
    assert.matches("TCP and UDP", err)
  end)

  it("runs the reload(server, old) hook, which may migrate state",
     function()
    start(handler_src("v1"))
    local c = client()
    assert.equal("v1 1 a\n", c.ask("a"))
    write(path, handler_src("v2", [[
function H.reload(server, old)
  server.state.count = server.state.count + 100
  server.state.old_had_answer = type(old.answer) == "function"
end]]))
    assert.is_true(server:reload())
    assert.is_true(server.state.old_had_answer)
    assert.equal("v2 102 b\n", c.ask("b"))
    -- A hook that fails refuses the reload.
    write(path, handler_src("v3", "function H.reload() error('no') end"))
    local ok, err = server:reload()
    assert.is_false(ok)
    assert.matches("reload hook failed", err)
    assert.equal("v2 103 c\n", c.ask("c"))
    c.sock:close()
  end)

  it("runs each version in a fresh environment", function()
    start(handler_src("v1"))
    write(path, "leaked_global_from_v2 = true\n" .. handler_src("v2"))
    assert.is_true(server:reload())
    assert.is_nil(rawget(_G, "leaked_global_from_v2"))
  end)

  it("reloads on a file change: rename and in-place writes", function()
    start(handler_src("v1"))
    local c = client()
    assert.equal("v1 1 a\n", c.ask("a"))
    write(path, handler_src("v2"), "rename")
    assert.is_true(wait_until(function() return server.version == 2 end))
    assert.equal("v2 2 b\n", c.ask("b"))
    write(path, handler_src("v3-inplace"), "inplace")
    assert.is_true(wait_until(function() return server.version == 3 end))
    assert.equal("v3-inplace 3 c\n", c.ask("c"))
    -- A broken write is refused, and the next good one is taken.
    write(path, "return {", "rename")
    assert.is_true(wait_until(function()
      return server.failed_reloads == 1
    end))
    assert.equal(3, server.version)
    write(path, handler_src("v4"), "inplace")
    assert.is_true(wait_until(function() return server.version == 4 end))
    assert.equal("v4 4 d\n", c.ask("d"))
    c.sock:close()
  end)

  it("skips a change that leaves the bytes as they were", function()
    start(handler_src("v1"))
    write(path, handler_src("v1"))
    time.sleep(0.3)
    assert.equal(1, server.version)
    assert.equal(0, server.reloads)
  end)

  it("watches by polling mtimes with reload-poll", function()
    start(handler_src("v1"), { ["reload-poll"] = "50" })
    local c = client()
    time.sleep(0.06)   -- let the poller take its first look
    write(path, handler_src("v2-polled") .. "-- longer\n")
    assert.is_true(wait_until(function() return server.version == 2 end))
    assert.equal("v2-polled 1 a\n", c.ask("a"))
    c.sock:close()
  end)

  it("does not watch with reload = no, but server:reload() works",
     function()
    start(handler_src("v1"), { reload = "no" })
    write(path, handler_src("v2"))
    time.sleep(0.3)
    assert.equal(1, server.version)
    assert.is_true(server:reload())
    assert.equal(2, server.version)
  end)

  it("reloads when a module the script loaded changes", function()
    dir = nil
    local d = mkdtemp()
    local modname = "reload_spec_mod_" .. tostring(os.time()) ..
                    tostring(math.random(1e6))
    write(d .. "/" .. modname .. ".lua",
          "return { tag = function() return 'm1' end }\n")
    local src = ([[
local mod = require "%s"
local H = {}
function H:handle()
  local f = self.request:makefile("rb")
  while true do
    local line = f:readline()
    if line == "" then return end
    self:answer(line)
  end
end
function H:answer(line)
  self.request:sendall(mod.tag() .. " " .. line)
end
return H
]]):format(modname)
    saved_path = package.path
    package.path = d .. "/?.lua;" .. package.path
    dir = d
    path = d .. "/handler.lua"
    write(path, src)
    server = serve.start(dofile(path), path,
                         { listen = { "127.0.0.1:0" } }, { n = 0 })
    local c = client()
    assert.equal("m1 a\n", c.ask("a"))
    write(d .. "/" .. modname .. ".lua",
          "return { tag = function() return 'm2' end }\n")
    assert.is_true(wait_until(function() return server.version == 2 end))
    assert.equal("m2 b\n", c.ask("b"))
    assert.equal("m2", package.loaded[modname].tag())
    -- A module that does not compile fails the whole reload.
    write(d .. "/" .. modname .. ".lua", "return { tag = \n")
    assert.is_true(wait_until(function()
      return server.failed_reloads == 1
    end))
    assert.matches(modname .. "%.lua:%d+:", server.last_error)
    assert.equal("m2 c\n", c.ask("c"))
    package.loaded[modname] = nil
    c.sock:close()
  end)

  it("keeps serving a UDP handler table across a reload", function()
    local src = [[
local socketserver = require "socketserver"
local H = socketserver.DatagramRequestHandler:subclass{}
function H:handle()
  self.wfile:write("%s:" .. self.rfile:read())
end
return H
]]
    start(src:format("u1"))
    local c <close> = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c:settimeout(5)
    c:sendto("x", server.server_address)
    assert.equal("u1:x", (c:recvfrom(100)))
    write(path, src:format("u2"))
    assert.is_true(server:reload())
    c:sendto("y", server.server_address)
    assert.equal("u2:y", (c:recvfrom(100)))
  end)
end)
