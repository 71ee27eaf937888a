-- command.lua -- run allowlisted programs for authenticated clients.
--
--   moonsock scripts/command.lua --key-file ~/.moonsock-command.key
--   moonsock --listen 127.0.0.1:9000 scripts/command.lua --key-file K \
--            --root /srv/data --allow ls,cat,wc
--
-- The tutorial's remote-command program, done so it can be exposed:
-- HMAC-SHA256 challenge-response over fresh nonces before anything runs,
-- an allowlist of programs run as an argv (never a shell), a confined
-- working directory and environment, output streamed back in
-- length-prefixed frames while the command runs, a timeout that kills the
-- whole process group, an output cap, concurrency limits, and one log
-- line per request. The protocol and every option are in docs/command.md.
-- Everything here waits through the task runtime, so one slow or chatty
-- command never stalls another connection.

local socket = require "socket"
local subprocess = require "subprocess"
local hmac = require "hmac"
local secrets = require "moonsock.secrets"
local task = require "moonsock.task"
local errors = require "moonsock.errors"
local threading = require "threading"
local frames = require "command_frames"

local CONFIG = {
  key_file = nil,            -- or $MOONSOCK_COMMAND_KEY_FILE
  root = ".",
  allow = { "echo", "printf", "cat", "ls", "wc", "head", "tail", "grep",
            "date", "uname", "pwd", "true", "false", "seq", "sha256sum",
            "base64" },
  env = { "LANG", "LC_ALL", "TZ" },
  command_timeout = 30,
  output_cap = 128 * 1024 * 1024,
  max_per_connection = 4,
  max_commands = 32,
  max_auth_failures = 3,
  auth_timeout = 10,
  max_request = 65536,
  confine_args = true,
  search_path = "/usr/local/bin:/usr/bin:/bin",
}

local AUTH_MAX = 64           -- the largest frame read before auth
local CHUNK = 65536
local GRACE = 1.0             -- after a kill, seconds to wait for pipes
local FLAG_TIMEOUT, FLAG_TRUNCATED, FLAG_CANCELLED = 1, 2, 4
local SIGKILL = subprocess.SIGKILL
local INFO, WARN = task.INFO, task.WARN

local function log(level, fmt, ...)
  task.log(level, fmt:format(...))
end

---------------------------------------------------------------------------
-- configuration: options after the script name, checked before serving

local KEY_HELP = [[
Create a key (32 random bytes, hex) that only you can read:

    umask 077; openssl rand -hex 32 > ~/.moonsock-command.key

then start the server with --key-file ~/.moonsock-command.key (or set
MOONSOCK_COMMAND_KEY_FILE), and give clients the same file.]]

local function fail(fmt, ...)
  errors.exit(2, "command.lua: " .. fmt:format(...))
end

local function split_list(s)
  local out = {}
  for item in s:gmatch("[^,%s]+") do out[#out + 1] = item end
  return out
end

local NUMBERS = {
  ["--command-timeout"] = { "command_timeout", 0.001 },
  ["--output-cap"] = { "output_cap", 1 },
  ["--max-per-connection"] = { "max_per_connection", 1 },
  ["--max-commands"] = { "max_commands", 1 },
  ["--max-auth-failures"] = { "max_auth_failures", 1 },
  ["--auth-timeout"] = { "auth_timeout", 0.001 },
  ["--max-request"] = { "max_request", 16 },
}

local function parse_args(args)
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    local function value()
      if inline then return inline end
      i = i + 1
      if args[i] == nil then fail("%s needs a value", name) end
      return args[i]
    end
    if name == "--key-file" then CONFIG.key_file = value()
    elseif name == "--root" then CONFIG.root = value()
    elseif name == "--allow" then CONFIG.allow = split_list(value())
    elseif name == "--env" then CONFIG.env = split_list(value())
    elseif name == "--no-confine-args" then CONFIG.confine_args = false
    elseif NUMBERS[name] then
      local key, min = NUMBERS[name][1], NUMBERS[name][2]
      local v = value()
      local n = tonumber(v)
      if n == nil or n < min then
        fail("%s: expected a number >= %s, got '%s'", name, min, v)
      end
      CONFIG[key] = n
    elseif name == "--help" or name == "-h" then
      io.stdout:write("usage: moonsock [--listen ADDR] scripts/command.lua "
        .. "--key-file PATH [options]\nsee docs/command.md\n")
      os.exit(0)
    else
      fail("unknown option '%s' (see docs/command.md)", a)
    end
    i = i + 1
  end
end

-- The key: a private regular file of ours; its bytes without trailing
-- whitespace, at least 16 of them.
local function load_key(path)
  if path == nil or path == "" then
    fail("no key file given.\n%s", KEY_HELP)
  end
  local mode, uid, kind = subprocess._stat(path)
  if mode == nil then
    fail("cannot use key file %s: %s\n%s", path,
         tostring(errors.from_errno(uid)), KEY_HELP)
  end
  if kind ~= "file" then
    fail("key file %s is a %s, not a regular file\n%s", path, kind,
         KEY_HELP)
  end
  if uid ~= subprocess._getuid() then
    fail("key file %s belongs to another user (uid %d)", path, uid)
  end
  if mode & 0x3f ~= 0 then        -- any bit of 077
    fail("key file %s can be read by others (mode %o); run: chmod 600 %s",
         path, mode, path)
  end
  local f = assert(io.open(path, "rb"))
  local key = f:read("a"):gsub("%s+$", "")
  f:close()
  if #key < 16 then
    fail("key file %s holds %d bytes; at least 16 are needed\n%s", path,
         #key, KEY_HELP)
  end
  return key
end

-- Find each allowed name in the fixed search path, once.
local function resolve_allow(names)
  local map, missing = {}, {}
  for _, name in ipairs(names) do
    if name:find("/", 1, true) or name == "" or name == "."
       or name == ".." then
      fail("--allow takes program names, not paths: '%s'", name)
    end
    local found
    for dir in CONFIG.search_path:gmatch("[^:]+") do
      local path = dir .. "/" .. name
      local _, _, kind = subprocess._stat(path)
      if kind == "file" or kind == "link" then
        found = subprocess._realpath(path)
        if found then break end
      end
    end
    if found then map[name] = found else missing[#missing + 1] = name end
  end
  if #missing > 0 then
    log(WARN, "not found, left off the allowlist: %s",
        table.concat(missing, ", "))
  end
  return map
end

parse_args({ ... })
CONFIG.key_file = CONFIG.key_file or os.getenv("MOONSOCK_COMMAND_KEY_FILE")
local KEY = load_key(CONFIG.key_file)
local ROOT = subprocess._realpath(CONFIG.root)
do
  local _, _, kind = subprocess._stat(ROOT or "")
  if ROOT == nil or kind ~= "dir" then
    fail("--root %s is not a directory", CONFIG.root)
  end
end
local ALLOW = resolve_allow(CONFIG.allow)
local ALLOW_NAMES = {}
for name in pairs(ALLOW) do ALLOW_NAMES[#ALLOW_NAMES + 1] = name end
table.sort(ALLOW_NAMES)

---------------------------------------------------------------------------
-- frames

-- read_frame(conn, max) -> type, id, payload | nil (end of stream) |
-- false, type, length (too long; the payload is left unread).
local read_frame = frames.read

-- Frames from several tasks (one per output pipe, per command) share the
-- socket; the lock keeps each frame's bytes together.
local function send_frame(c, t, id, payload)
  local data = frames.pack(t, id, payload)
  c.lock:acquire()
  local ok, err = pcall(c.conn.sendall, c.conn, data)
  c.lock:release()
  if not ok then
    c.broken = true
    error(err, 0)
  end
end

local function try_send(c, t, id, payload)
  if c.broken then return false end
  return (pcall(send_frame, c, t, id, payload))
end

local function mac(label, sn, cn)
  return frames.mac(KEY, label, sn, cn)
end

---------------------------------------------------------------------------
-- authentication

-- true once the peer proved it holds the key; false after sending why.
local function authenticate(c, server_timeout)
  local conn = c.conn
  local failures = 0
  conn:settimeout(CONFIG.auth_timeout)
  local deadline = task.now() + CONFIG.auth_timeout * 1000
  while true do
    local sn = secrets.token_bytes(32)
    send_frame(c, "N", 0, sn)
    local ok, t, _, payload = pcall(read_frame, conn, AUTH_MAX)
    if not ok then
      if errors.isinstance(t, "TimeoutError") then
        try_send(c, "F", 0, "authentication timed out")
        log(INFO, "%s: authentication timed out", c.peer)
        return false
      end
      error(t, 0)
    end
    if t == nil then return false end
    if t == false then
      try_send(c, "F", 0, "frame too large before authentication")
      log(WARN, "%s: %d-byte frame before authentication; closed", c.peer,
          payload)
      return false
    end
    if t ~= "A" or #payload ~= 64 then
      try_send(c, "F", 0, "not authenticated: expected an A frame of 64 "
               .. "bytes")
      log(WARN, "%s: '%s' frame before authentication; closed", c.peer, t)
      return false
    end
    local cn, proof = payload:sub(1, 32), payload:sub(33)
    if hmac.compare_digest(proof, mac("client", sn, cn)) then
      send_frame(c, "W", 0, mac("server", sn, cn))
      conn:settimeout(server_timeout)
      return true
    end
    failures = failures + 1
    log(WARN, "%s: authentication failed (%d of %d)", c.peer, failures,
        CONFIG.max_auth_failures)
    if failures >= CONFIG.max_auth_failures then
      try_send(c, "F", 0, "too many failed attempts")
      return false
    end
    -- A short pause per failure slows guessing; the deadline still holds.
    task.sleep(0.05 * failures)
    if task.now() >= deadline then
      try_send(c, "F", 0, "authentication timed out")
      return false
    end
    send_frame(c, "F", 0, ("authentication failed (%d attempt(s) left)")
               :format(CONFIG.max_auth_failures - failures))
  end
end

---------------------------------------------------------------------------
-- requests

-- Lexically normalise path (absolute) without touching the disk.
local function normalise(path)
  local parts = {}
  for comp in path:gmatch("[^/]+") do
    if comp == ".." then
      parts[#parts] = nil
    elseif comp ~= "." then
      parts[#parts + 1] = comp
    end
  end
  return "/" .. table.concat(parts, "/")
end

local function inside(path)
  return path == ROOT or path:sub(1, #ROOT + 1) == ROOT .. "/"
         or ROOT == "/"
end

-- The longest existing prefix of path, canonical (symlinks resolved),
-- plus the rest; so "root/link/new" is judged by where link points.
local function canonical(path)
  local real = subprocess._realpath(path)
  if real then return real end
  local parent, leaf = path:match("^(.*)/([^/]+)$")
  if parent == nil or parent == "" then return path end
  return normalise(canonical(parent) .. "/" .. leaf)
end

-- An argument that names a path outside the root, or nil.
local function escapes(arg, cwd)
  local candidates = { arg, arg:match("^[^=]*=(.*)$") }
  for _, a in ipairs(candidates) do
    local dotted = false
    for comp in a:gmatch("[^/]+") do
      if comp == ".." then dotted = true end
    end
    local abs = a:sub(1, 1) == "/" and a or cwd .. "/" .. a
    -- Also any existing name: a symlink inside may point outside.
    if a:sub(1, 1) == "/" or dotted
       or (a ~= "" and subprocess._stat(abs) ~= nil) then
      if not inside(normalise(abs)) or not inside(canonical(normalise(abs)))
      then
        return a
      end
    end
  end
  return nil
end

-- Parse and check an R payload: -> cwd, argv | nil, message.
local function check_request(payload)
  if payload:sub(-1) ~= "\0" then
    return nil, "bad request: strings must end with NUL"
  end
  local strs = {}
  for s in payload:gmatch("([^%z]*)%z") do strs[#strs + 1] = s end
  local rel = table.remove(strs, 1)
  local argv = strs
  if #argv == 0 or rel == nil then
    return nil, "bad request: no program"
  end
  local prog = argv[1]
  if ALLOW[prog] == nil then
    return nil, ("not allowed: '%s' is not on the allowlist (allowed: %s)")
                :format(prog, table.concat(ALLOW_NAMES, " "))
  end
  if rel:sub(1, 1) == "/" then
    return nil, "bad directory: must be relative to the root"
  end
  local cwd = subprocess._realpath(ROOT .. "/" .. rel)
  if cwd == nil then
    return nil, ("bad directory: '%s' does not exist"):format(rel)
  end
  if not inside(cwd) then
    return nil, ("bad directory: '%s' escapes the working directory")
                :format(rel)
  end
  local _, _, kind = subprocess._stat(cwd)
  if kind ~= "dir" then
    return nil, ("bad directory: '%s' is not a directory"):format(rel)
  end
  if CONFIG.confine_args then
    for i = 2, #argv do
      local bad = escapes(argv[i], cwd)
      if bad then
        return nil, ("argument %d escapes the working directory: '%s'")
                    :format(i - 1, bad)
      end
    end
  end
  return cwd, argv
end

local function child_env(cwd)
  local env = { PATH = CONFIG.search_path, PWD = cwd }
  for _, name in ipairs(CONFIG.env) do
    local v = os.getenv(name)
    if v ~= nil and name ~= "PATH" and name ~= "PWD" then env[name] = v end
  end
  return env
end

-- Wait until cmd.pending readers are done or deadline passes -> bool.
local function join(cmd, deadline)
  cmd.waiter = task.current()
  while cmd.pending > 0 do
    if task.suspend(deadline) == false and cmd.pending > 0 then
      cmd.waiter = nil
      return false
    end
  end
  cmd.waiter = nil
  return true
end

-- Forward one pipe as frames of type t, within the command's cap.
local function pump(c, cmd, file, t)
  local n = 0
  while true do
    local ok, data = pcall(file.read1, file, CHUNK)
    if not ok or data == "" then break end        -- end, or closed by us
    -- A fast child and a fast client may never make this task wait: let
    -- the other tasks run once a MiB, so no connection is starved.
    n = n + 1
    if n % 16 == 0 then task.sleep(0) end
    if not cmd.truncated and not c.broken then
      local room = CONFIG.output_cap - cmd.bytes
      if #data > room then
        data = data:sub(1, room)
        cmd.truncated = true
      end
      cmd.bytes = cmd.bytes + #data
      if #data > 0 and not try_send(c, t, cmd.id, data) then
        cmd.proc:killpg(SIGKILL)                  -- no one to read it
      end
      if cmd.truncated then
        try_send(c, "E", cmd.id, ("\n[moonsock: output truncated at %d "
                 .. "bytes]\n"):format(CONFIG.output_cap))
        cmd.proc:killpg(SIGKILL)
      end
    end
    -- Past the cap: keep draining so the child never blocks on a pipe
    -- before the kill lands.
  end
  if not file.closed then file:close() end
  cmd.pending = cmd.pending - 1
  if cmd.pending == 0 and cmd.waiter then task.wakeup(cmd.waiter, true) end
end

local function quote_argv(argv)
  return subprocess._repr(argv)
end

local function release(c, state, cmd)
  c.running[cmd.id] = nil
  c.nrunning = c.nrunning - 1
  state.running = state.running - 1
end

-- Run one command to its end and send its X frame.
local function execute(c, state, cmd, cwd, argv)
  local t0 = task.monotonic()
  local ok, p = pcall(subprocess.Popen, argv, {
    executable = ALLOW[argv[1]], cwd = cwd, env = child_env(cwd),
    stdin = subprocess.DEVNULL, stdout = subprocess.PIPE,
    stderr = subprocess.PIPE,
  })
  if not ok then
    release(c, state, cmd)
    try_send(c, "F", cmd.id, "cannot start: " .. tostring(p))
    log(INFO, "%s argv=%s refused: cannot start: %s", c.peer,
        quote_argv(argv), tostring(p))
    return
  end
  cmd.proc = p
  cmd.pending = 2
  local deadline = task.now() + math.ceil(CONFIG.command_timeout * 1000)
  local watchdog = task.spawn_daemon(function()
    if task.suspend(deadline) == false and not cmd.finished then
      cmd.timed_out = true
      p:killpg(SIGKILL)
    end
  end)
  task.spawn_daemon(pump, c, cmd, p.stdout, "O")
  task.spawn_daemon(pump, c, cmd, p.stderr, "E")

  p:wait()
  -- The readers end when every holder of the pipes is gone. A process
  -- that left the group could hold them forever: after the deadline (or
  -- a kill) and a grace period, cut them off.
  local limit = deadline + GRACE * 1000
  if cmd.timed_out or cmd.truncated or cmd.cancelled then
    limit = math.min(limit, task.now() + GRACE * 1000)
  end
  if not join(cmd, limit) then
    p:killpg(SIGKILL)
    p.stdout:close()
    p.stderr:close()
    join(cmd, nil)
  end
  cmd.finished = true
  task.wakeup(watchdog, true)
  release(c, state, cmd)

  local flags = (cmd.timed_out and FLAG_TIMEOUT or 0)
              | (cmd.truncated and FLAG_TRUNCATED or 0)
              | (cmd.cancelled and FLAG_CANCELLED or 0)
  try_send(c, "X", cmd.id, string.pack(">i4B", p.returncode, flags))
  local notes = {}
  if cmd.timed_out then notes[#notes + 1] = "timeout" end
  if cmd.truncated then notes[#notes + 1] = "truncated" end
  if cmd.cancelled then notes[#notes + 1] = "cancelled" end
  log(INFO, "%s argv=%s status=%d bytes=%d duration=%.3fs%s", c.peer,
      quote_argv(argv), p.returncode, cmd.bytes, task.monotonic() - t0,
      #notes > 0 and " " .. table.concat(notes, ",") or "")
end

local function start(c, state, id, payload)
  if id == 0 or c.running[id] then
    try_send(c, "F", 0, ("bad request: command id %d is %s"):format(
      id, id == 0 and "reserved" or "in use"))
    return
  end
  local cwd, argv = check_request(payload)
  if cwd == nil then
    try_send(c, "F", id, argv)
    local words = {}
    for s in payload:gmatch("([^%z]*)%z") do words[#words + 1] = s end
    table.remove(words, 1)
    log(INFO, "%s argv=%s refused: %s", c.peer, quote_argv(words), argv)
    return
  end
  if c.nrunning >= CONFIG.max_per_connection then
    local msg = ("busy: %d commands running on this connection (limit %d)")
                :format(c.nrunning, CONFIG.max_per_connection)
    try_send(c, "F", id, msg)
    log(INFO, "%s argv=%s refused: %s", c.peer, quote_argv(argv), msg)
    return
  end
  if state.running >= CONFIG.max_commands then
    local msg = ("busy: %d commands running on this server (limit %d)")
                :format(state.running, CONFIG.max_commands)
    try_send(c, "F", id, msg)
    log(INFO, "%s argv=%s refused: %s", c.peer, quote_argv(argv), msg)
    return
  end
  local cmd = { id = id, bytes = 0, pending = 0 }
  c.running[id] = cmd
  c.nrunning = c.nrunning + 1
  state.running = state.running + 1
  task.spawn_daemon(execute, c, state, cmd, cwd, argv)
end

---------------------------------------------------------------------------
-- the handler

local Command = { listen = { "127.0.0.1", 8022 } }

local function format_peer(addr)
  if type(addr) == "table" then
    return (addr[1]:find(":", 1, true) and "[%s]:%d" or "%s:%d")
           :format(addr[1], addr[2])
  end
  return tostring(addr)
end

function Command:handle()
  local state = self.server.state
  state.running = state.running or 0
  local c = { conn = self.request, peer = format_peer(self.client_address),
              lock = threading.Lock(), running = {}, nrunning = 0 }
  self.command = c
  -- Frames are small and often end a reply (X after O): without
  -- TCP_NODELAY, Nagle plus delayed ACKs adds 40 ms to each command.
  pcall(c.conn.setsockopt, c.conn, socket.IPPROTO_TCP, socket.TCP_NODELAY,
        1)
  if not authenticate(c, self.server.timeout) then return end
  log(INFO, "%s: authenticated", c.peer)
  while not c.broken do
    local t, id, payload = read_frame(c.conn, CONFIG.max_request)
    if t == nil then break end
    if t == false then
      try_send(c, "F", 0, ("request too large: %d bytes (limit %d)")
               :format(payload, CONFIG.max_request))
      break
    elseif t == "R" then
      start(c, state, id, payload)
    elseif t == "K" then
      local cmd = c.running[id]
      if cmd and cmd.proc then
        cmd.cancelled = true
        cmd.proc:killpg(SIGKILL)
      end
    elseif t == "P" then
      try_send(c, "P", id, payload:sub(1, 64))
    else
      try_send(c, "F", 0, ("protocol error: unknown frame type '%s'")
               :format(t))
      break
    end
  end
end

-- The connection is gone or ending: kill what it started, and wait until
-- each command has been reaped and accounted.
function Command:finish()
  local c = self.command
  if c == nil then return end
  c.broken = true
  for _, cmd in pairs(c.running) do
    cmd.cancelled = true
    if cmd.proc then cmd.proc:killpg(SIGKILL) end
  end
  local deadline = task.now() + 5000
  while c.nrunning > 0 and task.now() < deadline do task.sleep(0.01) end
end

return Command
