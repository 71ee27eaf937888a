-- upload.lua -- a file store people can trust: PUT, GET, LIST, STAT.
--
--   moonsock scripts/upload.lua [--dir DIR] [--max-size BYTES] ...
--   moonsock --listen 127.0.0.1:9000 scripts/upload.lua --dir /srv/files
--
-- The protocol is in docs/upload.md (one request line, one reply line,
-- stable error codes; PUT declares size and SHA-256 up front; uploads and
-- downloads resume). What this handler promises:
--   * Names are one plain component; files are opened relative to the
--     directory handle without following symlinks (moonsock.fs), so no
--     name and no planted symlink reaches outside the directory.
--   * Bytes go to a temporary in the same directory, named from the
--     request (name, size, hash) so a broken upload can resume. Only when
--     size and SHA-256 match is the temporary synced, renamed to its name
--     (without replacing one unless the request says overwrite) and the
--     directory synced: nothing partial ever has a final name.
--   * Limits refuse early: size before any body byte, free space (minus
--     what running uploads still need), transfers at once, idle time.
--   * Memory stays flat: the body streams to disk in chunks, downloads
--     go out with sendfile. Disk calls block the loop, so they are kept
--     small, writeback starts early and the task yields between chunks.
-- State shared by connections (running uploads, the hash cache) lives in
-- self.server.state, so it survives a reload of this script.

local socket = require "socket"
local hashlib = require "hashlib"
local fs = require "moonsock.fs"
local task = require "moonsock.task"
local errors = require "moonsock.errors"

local E = errors.errno
local ELOOP = fs.ELOOP

---------------------------------------------------------------------------
-- options (script arguments: moonsock [moonsock options] upload.lua ARGS)

local USAGE = [[
upload.lua options (after the script name):
  --dir DIR             storage directory, created if missing (./uploads)
  --max-size BYTES      largest file accepted (8G); K, M, G suffixes
  --max-transfers N     uploads and downloads at once (16)
  --idle-timeout SECS   close a connection idle this long (60)
  --reserve BYTES       free space always left on the disk (16M)
  --partial-ttl SECS    keep interrupted uploads this long for resume
                        (86400); older ones are removed at start-up
]]

local function bytes_arg(name, v)
  local n, unit = tostring(v):match("^(%d+)([KMGkmg]?)$")
  if n == nil then
    errors.exit(2, ("%s: expected a size like 1048576 or 100M, got '%s'\n%s")
                   :format(name, v, USAGE))
  end
  local mult = ({ [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3 })
               [unit:lower()]
  return math.tointeger(tonumber(n) * mult)
end

local function number_arg(name, v)
  local n = tonumber(v)
  if n == nil or n < 0 then
    errors.exit(2, ("%s: expected a number >= 0, got '%s'\n%s")
                   :format(name, tostring(v), USAGE))
  end
  return n
end

local function parse_args(...)
  local cfg = {
    dir = "uploads", max_size = 8 * 1024 ^ 3, max_transfers = 16,
    idle_timeout = 60, reserve = 16 * 1024 ^ 2, partial_ttl = 86400,
  }
  local args = { ... }
  local i = 1
  while i <= #args do
    local a, v = args[i], args[i + 1]
    if a == "--help" then
      io.stdout:write(USAGE)
      os.exit(0)
    end
    if v == nil then
      errors.exit(2, ("%s needs a value\n%s"):format(a, USAGE))
    end
    if a == "--dir" then cfg.dir = v
    elseif a == "--max-size" then cfg.max_size = bytes_arg(a, v)
    elseif a == "--max-transfers" then
      cfg.max_transfers = math.floor(number_arg(a, v))
    elseif a == "--idle-timeout" then cfg.idle_timeout = number_arg(a, v)
    elseif a == "--reserve" then cfg.reserve = bytes_arg(a, v)
    elseif a == "--partial-ttl" then cfg.partial_ttl = number_arg(a, v)
    else errors.exit(2, ("unknown option '%s'\n%s"):format(a, USAGE)) end
    i = i + 2
  end
  return cfg
end

local cfg = parse_args(...)

local CHUNK = 256 * 1024           -- one disk call; one recv at most
local YIELD_EVERY = 1024 * 1024    -- bytes between forced yields
local WRITEBACK_EVERY = 8 * 1024 * 1024
local MAX_LINE = 1024
local LINGER_SECONDS, LINGER_BYTES = 2, 64 * 1024 * 1024
local PART_PREFIX = ".moonsock-part-"
local RESERVED_PREFIX = ".moonsock-"
local XATTR = "user.moonsock.sha256"

local function log(level, fmt, ...)
  task.log(level, "upload: " .. fmt:format(...))
end

---------------------------------------------------------------------------
-- the storage directory, opened once; every name is relative to it

local dir = fs.opendir(cfg.dir, { create = true })

-- A protocol error: code and message for the client's ERR line.
local Refusal = {}
Refusal.__index = Refusal
Refusal.__tostring = function(r) return r.code .. " " .. r.msg end

local function refuse(code, fmt, ...)
  error(setmetatable({ code = code, msg = fmt:format(...) }, Refusal), 0)
end

-- Python-style OSError from moonsock.fs -> a refusal with a stable code.
local function os_refusal(err, what)
  if getmetatable(err) == Refusal then return err end
  if not errors.isinstance(err, "OSError") then return nil end
  local e = err.errno
  local code = "IO_ERROR"
  if e == E.ENOSPC or e == E.EDQUOT then code = "NO_SPACE"
  elseif e == E.ENOENT then code = "NOT_FOUND"
  elseif e == E.EEXIST then code = "EXISTS"
  elseif e == ELOOP or e == E.EISDIR then code = "NOT_A_FILE" end
  return setmetatable({ code = code, msg = ("%s: %s")
                        :format(what, err.strerror or tostring(err)) },
                      Refusal)
end

-- check_name(name): refuse anything but one plain, printable component.
local function check_name(name)
  if name == nil or name == "" then refuse("BAD_NAME", "empty name") end
  if #name > 255 then refuse("BAD_NAME", "name longer than 255 bytes") end
  if name == "." or name == ".." then
    refuse("BAD_NAME", "'.' and '..' are not file names")
  end
  if name:find("[/\\]") then
    refuse("BAD_NAME", "name contains '/' or '\\'")
  end
  if not utf8.len(name) then refuse("BAD_NAME", "name is not UTF-8") end
  for _, c in utf8.codes(name) do
    if c < 0x20 or (c >= 0x7f and c <= 0x9f) then
      refuse("BAD_NAME", "name contains a control character")
    end
  end
  if name:sub(1, #RESERVED_PREFIX) == RESERVED_PREFIX then
    refuse("BAD_NAME", "names beginning '%s' are reserved",
           RESERVED_PREFIX)
  end
end

local function valid_name(name)
  return (pcall(check_name, name))
end

local function part_name(name, size, sha)
  local h = hashlib.sha256(name .. "\0" .. size .. "\0" .. sha)
  return PART_PREFIX .. h:hexdigest()
end

-- At start-up: remove interrupted uploads older than partial_ttl; keep
-- the others so their clients can resume. (A reload runs this too; a
-- running upload's temporary is fresh, so it is never taken.)
local function sweep()
  local now = os.time()
  local kept, removed = 0, 0
  for _, n in ipairs(fs.listdir(dir)) do
    if n:sub(1, #PART_PREFIX) == PART_PREFIX then
      local ok, st = pcall(fs.stat, n, { dir_fd = dir })
      if ok and st.is_file and cfg.partial_ttl > 0
         and now - st.st_mtime < cfg.partial_ttl then
        kept = kept + 1
      elseif ok then
        pcall(fs.unlink, n, { dir_fd = dir })
        removed = removed + 1
      end
    end
  end
  if kept + removed > 0 then
    log(task.INFO, "%d interrupted upload(s) kept for resume, %d "
        .. "expired removed", kept, removed)
  end
end
sweep()

---------------------------------------------------------------------------
-- hashing files already on disk (GET, STAT, resumed uploads)

-- hash_range(f, upto, h) -> h updated with the first upto bytes of f,
-- CHUNK at a time, yielding between chunks so a big file does not stall
-- other clients. Raises IO_ERROR if the file is shorter.
local function hash_range(f, upto, h)
  local pos = 0
  while pos < upto do
    local want = upto - pos
    if want > CHUNK then want = CHUNK end
    local data = f:pread(want, pos)
    if data == "" then refuse("IO_ERROR", "file shrank while reading") end
    h:update(data)
    pos = pos + #data
    task.sleep(0)
  end
  return h
end

-- file_hash(state, f, st) -> hex SHA-256 of the whole file, from the
-- xattr written at commit, the in-memory cache, or by reading it. All
-- are keyed by inode, size and mtime, so a file changed behind our back
-- is hashed again rather than served with a stale hash.
local function file_hash(state, f, st)
  local stamp = ("%d %d"):format(st.st_size, st.st_mtime_ns)
  local key = ("%d:%d"):format(st.st_dev, st.st_ino)
  local c = state.hashes[key]
  if c and c.stamp == stamp then return c.hex end
  local x = f:getxattr(XATTR)
  if x then
    local hex, s = x:match("^(%x+) (.*)$")
    if hex and #hex == 64 and s == stamp then
      state.hashes[key] = { stamp = stamp, hex = hex }
      return hex
    end
  end
  local hex = hash_range(f, st.st_size, hashlib.sha256()):hexdigest()
  state.hashes[key] = { stamp = stamp, hex = hex }
  pcall(f.setxattr, f, XATTR, hex .. " " .. stamp)
  return hex
end

---------------------------------------------------------------------------
-- a line reader over the connection that hands leftover bytes to the body

local Conn = {}
Conn.__index = Conn

local function new_conn(sock)
  return setmetatable({ sock = sock, buf = "" }, Conn)
end

-- readline() -> line without "\n" (and "\r"), or nil at end of stream.
-- A line longer than MAX_LINE is refused.
function Conn:readline()
  while true do
    local nl = self.buf:find("\n", 1, true)
    if nl then
      local line = self.buf:sub(1, nl - 1)
      self.buf = self.buf:sub(nl + 1)
      if #line > MAX_LINE then
        refuse("BAD_REQUEST", "request line longer than %d bytes",
               MAX_LINE)
      end
      return (line:gsub("\r$", ""))
    end
    if #self.buf > MAX_LINE then
      refuse("BAD_REQUEST", "request line longer than %d bytes", MAX_LINE)
    end
    local data = self.sock:recv(4096)
    if data == "" then
      if self.buf ~= "" then
        refuse("BAD_REQUEST", "request line not terminated by newline")
      end
      return nil
    end
    self.buf = self.buf .. data
  end
end

-- read(n) -> up to n bytes: what is buffered first, then one recv; ""
-- at end of stream.
function Conn:read(n)
  if self.buf ~= "" then
    local data = self.buf:sub(1, n)
    self.buf = self.buf:sub(n + 1)
    return data
  end
  return self.sock:recv(n)
end

function Conn:reply(fmt, ...)
  self.sock:sendall(fmt:format(...) .. "\n")
end

-- linger(): before closing on an error, stop sending and read (and drop)
-- what the client still sends, for a moment: closing with unread bytes
-- would reset the connection, and the client could lose the ERR line.
function Conn:linger()
  local s = self.sock
  pcall(function()
    s:shutdown(socket.SHUT_WR)
    s:settimeout(LINGER_SECONDS)
    local deadline, left = task.now() + LINGER_SECONDS * 1000, LINGER_BYTES
    while left > 0 and task.now() < deadline do
      local data = s:recv(65536)
      if data == "" then return end
      left = left - #data
    end
  end)
end

---------------------------------------------------------------------------
-- the requests

local Upload = { listen = { "0.0.0.0", 8000 }, config = cfg }

local function state_of(server)
  local s = server.state
  if s.uploads == nil then
    s.uploads = {}        -- temporary name -> true while being written
    s.transfers = 0       -- uploads and downloads running
    s.pending = 0         -- bytes running uploads may still write
    s.hashes = {}         -- "dev:ino" -> {stamp, hex}
  end
  return s
end

-- A to-be-closed guard that gives a transfer slot (and any reserved
-- space) back however the request ends.
local function slot(state)
  if state.transfers >= cfg.max_transfers then
    refuse("BUSY", "too many transfers at once (%d); try again later",
           cfg.max_transfers)
  end
  state.transfers = state.transfers + 1
  local g = { pending = 0 }
  function g.reserve(n)
    state.pending = state.pending + n - g.pending
    g.pending = n
  end
  return setmetatable(g, { __close = function()
    state.transfers = state.transfers - 1
    state.pending = state.pending - g.pending
    if g.part then state.uploads[g.part] = nil end
  end })
end

local function parse_size(s, what)
  if s == nil or not s:match("^%d+$") or #s > 18 then
    refuse("BAD_REQUEST", "%s must be a decimal number of bytes", what)
  end
  return math.tointeger(tonumber(s))
end

local function lstat(name)
  local ok, st = pcall(fs.stat, name, { dir_fd = dir })
  if ok then return st end
  if errors.isinstance(st, "FileNotFoundError") then return nil end
  error(os_refusal(st, name), 0)
end

-- PUT SIZE SHA256 FLAGS NAME
function Upload:put(c, args)
  local size_s, sha, flags, name = args:match("^(%S+) (%S+) (%S+) (.*)$")
  if size_s == nil then
    refuse("BAD_REQUEST", "usage: PUT SIZE SHA256 FLAGS NAME")
  end
  local size = parse_size(size_s, "SIZE")
  sha = sha:lower()
  if not sha:match("^" .. ("%x"):rep(64) .. "$") then
    refuse("BAD_REQUEST", "SHA256 must be 64 hex digits")
  end
  local overwrite, resume = false, false
  if flags ~= "-" then
    for f in (flags .. ","):gmatch("([^,]*),") do
      if f == "overwrite" then overwrite = true
      elseif f == "resume" then resume = true
      else refuse("BAD_REQUEST", "unknown flag '%s'", f) end
    end
  end
  check_name(name)
  if size > cfg.max_size then
    refuse("TOO_LARGE", "%d bytes is over the limit of %d", size,
           cfg.max_size)
  end
  local st = lstat(name)
  if st and not st.is_file then
    refuse("NOT_A_FILE", "'%s' exists and is not a regular file", name)
  end
  if st and not overwrite then
    refuse("EXISTS", "'%s' exists (ask to overwrite)", name)
  end

  local state = state_of(self.server)
  local guard <close> = slot(state)
  local part = part_name(name, size, sha)
  if state.uploads[part] then
    refuse("BUSY", "the same upload of '%s' is already running", name)
  end
  state.uploads[part] = true
  guard.part = part

  -- The temporary: resumed from where it ends, or started afresh.
  local f, offset
  if resume then
    local ok, r = pcall(fs.open, part, fs.O_RDWR, 0, { dir_fd = dir })
    if ok then
      f = r
      offset = f:fstat().st_size
      if offset > size then offset = 0 end
    elseif not errors.isinstance(r, "FileNotFoundError") then
      error(os_refusal(r, "temporary"), 0)
    end
  end
  if f == nil then
    f = fs.open(part, fs.O_RDWR | fs.O_CREAT | fs.O_TRUNC, 420,
                { dir_fd = dir })
    offset = 0
  end
  local keep = true    -- whether a failure leaves it for a resume
  local ok, err = pcall(function()
    if offset == 0 then f:truncate(0) end
    local need = size - offset
    local free = fs.disk_usage(dir).free - cfg.reserve - state.pending
    if need > free then
      refuse("NO_SPACE", "%d more bytes needed, %d free", need,
             free > 0 and free or 0)
    end
    guard.reserve(need)
    local h = hashlib.sha256()
    if offset > 0 then hash_range(f, offset, h) end
    c:reply("OK SEND %d", offset)
    self:receive(c, f, h, offset, size, guard)
    if h:hexdigest() ~= sha then
      keep = false
      refuse("HASH_MISMATCH", "the %d bytes received have SHA-256 %s",
             size, h:hexdigest())
    end
    -- Commit: data on disk, then the name, then the name on disk.
    keep = false
    f:fsync()
    local fst = f:fstat()
    pcall(f.setxattr, f, XATTR, ("%s %d %d"):format(sha, fst.st_size,
                                                    fst.st_mtime_ns))
    local rok, rerr = pcall(fs.rename, part, name,
                            { dir_fd = dir, noreplace = not overwrite })
    if not rok then
      if errors.isinstance(rerr, "FileExistsError") then
        refuse("EXISTS", "'%s' was stored by another upload meanwhile",
               name)
      end
      error(rerr, 0)
    end
    dir:fsync()
    state.hashes[("%d:%d"):format(fst.st_dev, fst.st_ino)] =
      { stamp = ("%d %d"):format(fst.st_size, fst.st_mtime_ns), hex = sha }
  end)
  f:close()
  if not ok then
    -- A full disk frees what the temporary took: no resume from it.
    local r = os_refusal(err, "write")
    if r and r.code == "NO_SPACE" then keep = false end
    if not keep then pcall(fs.unlink, part, { dir_fd = dir }) end
    error(err, 0)
  end
  log(task.INFO, "stored '%s' (%d bytes)", name, size)
  c:reply("OK STORED %d %s", size, sha)
end

-- receive(c, f, h, pos, size, guard): the body, CHUNK at a time, to f at
-- pos and into h. Ends the connection's request with SHORT_BODY if the
-- stream ends first (the temporary stays for a resume).
function Upload:receive(c, f, h, pos, size, guard)
  local since_yield, since_wb, wb_from = 0, 0, pos
  while pos < size do
    local want = size - pos
    if want > CHUNK then want = CHUNK end
    local data = c:read(want)
    if data == "" then
      refuse("SHORT_BODY", "connection ended after %d of %d bytes", pos,
             size)
    end
    f:pwrite(data, pos)
    h:update(data)
    pos = pos + #data
    guard.reserve(size - pos)
    since_yield, since_wb = since_yield + #data, since_wb + #data
    if since_wb >= WRITEBACK_EVERY then
      f:writeback(wb_from, since_wb)
      wb_from, since_wb = pos, 0
    end
    if since_yield >= YIELD_EVERY then
      since_yield = 0
      task.sleep(0)     -- a fast client must not hold the loop
    end
  end
end

-- GET OFFSET NAME
function Upload:get(c, args)
  local off_s, name = args:match("^(%S+) (.*)$")
  if off_s == nil then refuse("BAD_REQUEST", "usage: GET OFFSET NAME") end
  local offset = parse_size(off_s, "OFFSET")
  check_name(name)
  local state = state_of(self.server)
  local guard <close> = slot(state)  -- luacheck: ignore (held to scope end)
  local ok, f = pcall(fs.open, name, fs.O_RDONLY, 0, { dir_fd = dir })
  if not ok then error(os_refusal(f, name), 0) end
  local sent, size
  local gok, gerr = pcall(function()
    local st = f:fstat()
    if not st.is_file then
      refuse("NOT_A_FILE", "'%s' is not a regular file", name)
    end
    size = st.st_size
    if offset > size then
      refuse("BAD_OFFSET", "offset %d is beyond the size %d", offset, size)
    end
    local hex = file_hash(state, f, st)
    c:reply("OK %d %s", size, hex)
    sent = self.request:sendfile(f, offset, size - offset)
  end)
  f:close()
  if not gok then error(gerr, 0) end
  if sent ~= size - offset then
    -- The file shrank under us: the client sees a short body and its
    -- hash check fails; nothing better can be said mid-stream.
    log(task.WARN, "'%s' shrank while being sent", name)
    return "close"
  end
end

-- STAT NAME
function Upload:stat(c, name)
  check_name(name)
  local ok, f = pcall(fs.open, name, fs.O_RDONLY, 0, { dir_fd = dir })
  if not ok then error(os_refusal(f, name), 0) end
  local sok, r = pcall(function()
    local st = f:fstat()
    if not st.is_file then
      refuse("NOT_A_FILE", "'%s' is not a regular file", name)
    end
    return ("OK %d %d %s"):format(st.st_size, math.floor(st.st_mtime),
                                  file_hash(state_of(self.server), f, st))
  end)
  f:close()
  if not sok then error(r, 0) end
  c:reply("%s", r)
end

-- LIST
function Upload:list(c, args)
  if args ~= "" then refuse("BAD_REQUEST", "usage: LIST") end
  local lines = {}
  for _, n in ipairs(fs.listdir(dir)) do
    if valid_name(n) then
      local ok, st = pcall(fs.stat, n, { dir_fd = dir })
      if ok and st.is_file then
        lines[#lines + 1] = ("%d %d %s\n"):format(st.st_size,
                                                  math.floor(st.st_mtime), n)
      end
    end
  end
  c:reply("OK %d", #lines)
  if #lines > 0 then self.request:sendall(table.concat(lines)) end
end

local COMMANDS = { PUT = "put", GET = "get", STAT = "stat", LIST = "list" }

function Upload:setup()
  if not self.server.timeout and cfg.idle_timeout > 0 then
    self.request:settimeout(cfg.idle_timeout)
  end
end

function Upload:handle()
  local c = new_conn(self.request)
  while true do
    local ok, line = pcall(c.readline, c)
    if ok and line == nil then return end
    local verb, args = ""
    local result, err
    if ok then
      verb, args = line:match("^(%u+) ?(.*)$")
      local m = COMMANDS[verb or ""]
      if m == nil then
        verb = verb or ""
        ok, err = false, setmetatable({ code = "BAD_REQUEST", msg =
          "unknown command; use PUT, GET, STAT or LIST" }, Refusal)
      else
        ok, result = pcall(self[m], self, c, args)
        err = result
      end
    else
      err = line
    end
    if not ok then
      if errors.isinstance(err, "TimeoutError") then
        pcall(c.reply, c, "ERR TIMEOUT idle for %gs", cfg.idle_timeout)
        return
      end
      if errors.isinstance(err, "ConnectionError") then return end
      local r = os_refusal(err, verb)
      if r == nil then error(err, 0) end     -- a bug: log the traceback
      if r.code == "IO_ERROR" then
        log(task.ERROR, "%s: %s", verb, r.msg)
      end
      pcall(c.reply, c, "ERR %s %s", r.code, r.msg)
      -- After a refused PUT the client may already be sending a body we
      -- would misread as requests: end the connection.
      if verb == "PUT" or r.code == "BAD_REQUEST" then
        c:linger()
        return
      end
    elseif result == "close" then
      return
    end
  end
end

return Upload
