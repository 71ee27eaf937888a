-- upload_client.lua -- the client of scripts/upload.lua.
--
--   moonsock scripts/upload_client.lua put  HOST PORT FILE [NAME] [flags]
--   moonsock scripts/upload_client.lua get  HOST PORT NAME [FILE] [flags]
--   moonsock scripts/upload_client.lua list HOST PORT
--   moonsock scripts/upload_client.lua stat HOST PORT NAME
--   flags: --overwrite (replace an existing name / local file),
--          --resume (continue an interrupted transfer),
--          --progress / --quiet (force the progress bar on or off)
--
-- Speaks the protocol of docs/upload.md with the plain socket API. A
-- progress bar (bytes, rate, time left) goes to stderr when it is a
-- terminal; otherwise only errors are printed. Downloads land in
-- FILE.part and are renamed to FILE only after their SHA-256 matches the
-- server's, so a failed download never leaves a wrong FILE; --resume
-- continues FILE.part. Exit status: 0 on success, 1 with the server's
-- "ERR CODE message" (or the local error) on stderr, 2 for bad usage.

local socket = require "socket"
local hashlib = require "hashlib"
local fs = require "moonsock.fs"
local task = require "moonsock.task"

local CHUNK = 256 * 1024
local USAGE = [[
usage: upload_client.lua put  HOST PORT FILE [NAME] [--overwrite] [--resume]
       upload_client.lua get  HOST PORT NAME [FILE] [--overwrite] [--resume]
       upload_client.lua list HOST PORT
       upload_client.lua stat HOST PORT NAME
       (--progress / --quiet force the progress bar on or off)
]]

-- A failure to report: message for stderr, and the exit status.
local Fail = {}
local function fail(status, fmt, ...)
  error(setmetatable({ status = status, msg = fmt:format(...) }, Fail), 0)
end

---------------------------------------------------------------------------
-- progress bar

local function human(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do n, i = n / 1024, i + 1 end
  return i == 1 and ("%d B"):format(n) or ("%.1f %s"):format(n, units[i])
end

local function clock(s)
  s = math.floor(s + 0.5)
  if s >= 3600 then
    return ("%d:%02d:%02d"):format(s // 3600, s % 3600 // 60, s % 60)
  end
  return ("%d:%02d"):format(s // 60, s % 60)
end

local Progress = {}
Progress.__index = Progress

-- new_progress(enabled, label, total, done): done is where a resumed
-- transfer starts (not counted in the rate).
local function new_progress(enabled, label, total, done)
  return setmetatable({ on = enabled, label = label, total = total,
                        done = done, start_done = done,
                        t0 = task.monotonic(), last = 0 }, Progress)
end

function Progress:add(n)
  self.done = self.done + n
  if not self.on then return end
  local now = task.monotonic()
  if now - self.last < 0.1 and self.done < self.total then return end
  self.last = now
  local elapsed = now - self.t0
  local rate = elapsed > 0 and (self.done - self.start_done) / elapsed or 0
  local frac = self.total > 0 and self.done / self.total or 1
  local width = 24
  local fill = math.floor(frac * width)
  local eta = rate > 0 and clock((self.total - self.done) / rate) or "--:--"
  io.stderr:write(("\r%s [%s%s] %3d%% %s / %s  %s/s  %s left  ")
    :format(self.label, ("#"):rep(fill), (" "):rep(width - fill),
            math.floor(frac * 100), human(self.done), human(self.total),
            human(rate), eta))
  io.stderr:flush()
end

function Progress:finish()
  if self.on then
    self:add(0)
    io.stderr:write("\n")
  end
end

---------------------------------------------------------------------------
-- the connection

local function connect(host, port)
  local p = math.tointeger(tonumber(port))
  if p == nil then fail(2, "bad port '%s'", tostring(port)) end
  local ok, s = pcall(socket.create_connection, { host, p }, 30)
  if not ok then fail(1, "cannot connect to %s:%d: %s", host, p,
                      tostring(s)) end
  return { sock = s, buf = "" }
end

local function readline(c)
  while true do
    local nl = c.buf:find("\n", 1, true)
    if nl then
      local line = c.buf:sub(1, nl - 1)
      c.buf = c.buf:sub(nl + 1)
      return line
    end
    local data = c.sock:recv(65536)
    if data == "" then fail(1, "server closed the connection") end
    c.buf = c.buf .. data
  end
end

local function read(c, n)
  if c.buf ~= "" then
    local data = c.buf:sub(1, n)
    c.buf = c.buf:sub(n + 1)
    return data
  end
  return c.sock:recv(n)
end

-- expect(c, pattern) -> captures of an OK reply, or fail with the ERR.
local function expect(c, pattern)
  local line = readline(c)
  local caps = { line:match(pattern) }
  if caps[1] ~= nil then return table.unpack(caps) end
  if line:match("^ERR ") then fail(1, "%s", line) end
  fail(1, "unexpected reply: %s", line)
end

---------------------------------------------------------------------------
-- commands

local function hash_file(f, upto)
  local h = hashlib.sha256()
  f:seek("set", 0)
  local left = upto
  while left > 0 do
    local data = f:read(left < CHUNK and left or CHUNK)
    if data == nil then fail(1, "local file shrank while hashing") end
    h:update(data)
    left = left - #data
  end
  return h
end

local function basename(path)
  return path:match("([^/]*)$")
end

local function put(opt, host, port, path, name)
  if path == nil then fail(2, "%s", USAGE) end
  name = name or basename(path)
  local f, err = io.open(path, "rb")
  if f == nil then fail(1, "%s", err) end
  local size = f:seek("end")
  local sha = hash_file(f, size):hexdigest()
  local flags = {}
  if opt.overwrite then flags[#flags + 1] = "overwrite" end
  if opt.resume then flags[#flags + 1] = "resume" end
  local c = connect(host, port)
  c.sock:sendall(("PUT %d %s %s %s\n"):format(size, sha,
    #flags > 0 and table.concat(flags, ",") or "-", name))
  local offset = math.tointeger(tonumber(expect(c, "^OK SEND (%d+)$")))
  f:seek("set", offset)
  local bar = new_progress(opt.progress, name, size, offset)
  local left = size - offset
  while left > 0 do
    local data = f:read(left < CHUNK and left or CHUNK)
    if data == nil then fail(1, "local file shrank while sending") end
    c.sock:sendall(data)
    left = left - #data
    bar:add(#data)
  end
  bar:finish()
  f:close()
  expect(c, "^OK STORED (%d+) (%x+)$")
  c.sock:close()
  if opt.progress then
    io.stdout:write(("stored %s: %d bytes, sha256 %s%s\n"):format(
      name, size, sha, offset > 0 and (" (resumed at %d)"):format(offset)
      or ""))
  end
end

local function get(opt, host, port, name, path)
  if name == nil then fail(2, "%s", USAGE) end
  path = path or basename(name)
  if io.open(path, "rb") and not opt.overwrite then
    fail(1, "%s exists (use --overwrite)", path)
  end
  local part = path .. ".part"
  local offset, f = 0, nil
  if opt.resume then
    f = io.open(part, "r+b")
    if f then offset = f:seek("end") end
  end
  local c = connect(host, port)
  c.sock:sendall(("GET %d %s\n"):format(offset, name))
  local size_s, sha = expect(c, "^OK (%d+) (%x+)$")
  -- Created only once the server has said yes, so a refused or failed
  -- request leaves no empty FILE.part behind.
  if f == nil then
    local err
    f, err = io.open(part, "w+b")
    if f == nil then fail(1, "%s", err) end
  end
  local size = math.tointeger(tonumber(size_s))
  local h = hash_file(f, offset)
  f:seek("set", offset)
  local bar = new_progress(opt.progress, name, size, offset)
  local left = size - offset
  while left > 0 do
    local data = read(c, left < CHUNK and left or CHUNK)
    if data == "" then
      f:close()
      fail(1, "connection ended after %d of %d bytes (%s kept; --resume "
           .. "continues)", size - left, size, part)
    end
    f:write(data)
    h:update(data)
    left = left - #data
    bar:add(#data)
  end
  bar:finish()
  c.sock:close()
  f:close()
  if h:hexdigest() ~= sha then
    os.remove(part)
    fail(1, "hash mismatch: server says %s, received %s", sha,
         h:hexdigest())
  end
  local ok, rerr = os.rename(part, path)
  if not ok then fail(1, "%s", rerr) end
  if opt.progress then
    io.stdout:write(("fetched %s: %d bytes, sha256 %s\n"):format(path, size,
                                                               sha))
  end
end

local function list(_, host, port)
  local c = connect(host, port)
  c.sock:sendall("LIST\n")
  local n = math.tointeger(tonumber(expect(c, "^OK (%d+)$")))
  for _ = 1, n do
    local size, mtime, name = readline(c):match("^(%d+) (%d+) (.*)$")
    io.stdout:write(("%12s  %s  %s\n"):format(size,
      os.date("!%Y-%m-%d %H:%M:%S", math.tointeger(tonumber(mtime))), name))
  end
  c.sock:close()
end

local function stat(_, host, port, name)
  if name == nil then fail(2, "%s", USAGE) end
  local c = connect(host, port)
  c.sock:sendall(("STAT %s\n"):format(name))
  local size, mtime, sha = expect(c, "^OK (%d+) (%d+) (%x+)$")
  io.stdout:write(("%s  %s bytes  %s  sha256 %s\n"):format(name, size,
    os.date("!%Y-%m-%d %H:%M:%S", math.tointeger(tonumber(mtime))), sha))
  c.sock:close()
end

local COMMANDS = { put = put, get = get, list = list, stat = stat }

local function main(...)
  local opt = { progress = fs.isatty(2) }
  local args = {}
  for _, a in ipairs({ ... }) do
    if a == "--overwrite" then opt.overwrite = true
    elseif a == "--resume" then opt.resume = true
    elseif a == "--progress" then opt.progress = true
    elseif a == "--quiet" then opt.progress = false
    elseif a:sub(1, 2) == "--" then fail(2, "unknown option %s\n%s", a,
                                          USAGE)
    else args[#args + 1] = a end
  end
  local cmd = COMMANDS[args[1] or ""]
  if cmd == nil or #args < 3 then fail(2, "%s", USAGE) end
  cmd(opt, table.unpack(args, 2))
end

local ok, err = pcall(main, ...)
if not ok then
  if getmetatable(err) ~= Fail then
    -- An exception from the socket layer (reset, timeout) is the
    -- transfer failing, not a bug: one line, status 1. Anything else is.
    if type(err) ~= "table" or err.name == nil then error(err, 0) end
    err = { msg = tostring(err), status = 1 }
  end
  io.stderr:write("upload_client: ", err.msg, err.msg:sub(-1) == "\n"
                  and "" or "\n")
  task.setstatus(err.status)
end
