-- subprocess.lua -- Python's subprocess module over _moonsock.subprocess.
--
-- run(args, opts) -> CompletedProcess, and Popen(args, opts) with Python's
-- methods (poll, wait, communicate, send_signal, terminate, kill) and
-- attributes (args, pid, returncode, stdin, stdout, stderr). Python's
-- keyword arguments are one table: run({"ls", "-l"}, {capture_output =
-- true, timeout = 5, cwd = "/tmp", env = {LANG = "C"}, check = true}).
--
-- Every wait suspends the calling task only: pipe reads and writes wait
-- on their fd through the loop, wait() sleeps until the loop has reaped
-- the child (SIGCHLD; core/proc.c), and communicate() runs one small task
-- per pipe so neither pipe can fill up and stall the child. Children get
-- a process group of their own and no descriptor but 0, 1, 2. No shell
-- unless shell = true. Data is bytes (Lua strings); `text` is not
-- supported.
--
-- Differences from Python, on purpose: run() with a timeout kills the
-- child's whole process group, not just the child, so a grandchild
-- holding the pipes cannot make it hang; Popen:killpg(sig) does the same
-- by hand.

local raw = require "_moonsock.subprocess"
local task = require "moonsock.task"
local errors = require "moonsock.errors"

local M = {}

local E = errors.errno
local EAGAIN, EBADF, EPIPE = E.EAGAIN, E.EBADF, E.EPIPE
local READ, WRITE = task.READ, task.WRITE
local CHUNK = 65536

M.PIPE, M.STDOUT, M.DEVNULL = -1, -2, -3
M.SIGTERM, M.SIGKILL, M.SIGINT, M.SIGHUP = raw.SIGTERM, raw.SIGKILL,
                                           raw.SIGINT, raw.SIGHUP

---------------------------------------------------------------------------
-- argument checks and messages

-- Python's repr of a str or list of str, for messages.
local REPR_ESC = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                   ["\\"] = "\\\\", ["'"] = "\\'" }
local function repr(v)
  if type(v) ~= "table" then
    -- Control bytes escaped, so a log line stays one line.
    return "'" .. tostring(v):gsub("[%c\\']", function(c)
      return REPR_ESC[c] or ("\\x%02x"):format(c:byte())
    end) .. "'"
  end
  local parts = {}
  for i, s in ipairs(v) do parts[i] = repr(s) end
  return "[" .. table.concat(parts, ", ") .. "]"
end
M._repr = repr

local function check_str(s, what, level)
  if type(s) == "number" then s = tostring(s) end
  if type(s) ~= "string" then
    errors.throw("TypeError", ("%s must be str, not %s"):format(
      what, type(s)), level + 1)
  end
  if s:find("\0", 1, true) then
    errors.throw("ValueError", "embedded null byte", level + 1)
  end
  return s
end

-- Data for a pipe: any bytes, NULs included.
local function check_bytes(s, what, level)
  if type(s) ~= "string" then
    errors.throw("TypeError", ("%s: a bytes-like object is required, not "
                 .. "%s"):format(what, type(s)), level + 1)
  end
  return s
end

-- args (string or list) and shell -> argv list.
local function make_argv(args, shell, level)
  local argv = {}
  if type(args) == "string" then
    argv[1] = check_str(args, "args", level + 1)
  elseif type(args) == "table" then
    for i, a in ipairs(args) do
      argv[i] = check_str(a, "args[" .. i .. "]", level + 1)
    end
  else
    errors.throw("TypeError", "args must be a str or a list of str",
                 level + 1)
  end
  if #argv == 0 then
    errors.throw("ValueError", "args is empty", level + 1)
  end
  if shell then
    table.insert(argv, 1, "-c")
    table.insert(argv, 1, "/bin/sh")
  end
  return argv
end

-- env mapping -> sorted list of "NAME=value".
local function make_env(env, level)
  if env == nil then return nil end
  if type(env) ~= "table" then
    errors.throw("TypeError", "env must be a mapping", level + 1)
  end
  local list = {}
  for k, v in pairs(env) do
    k = check_str(k, "env key", level + 1)
    v = check_str(v, "env value", level + 1)
    if k == "" or k:find("=", 1, true) then
      errors.throw("ValueError", "illegal environment variable name",
                   level + 1)
    end
    list[#list + 1] = k .. "=" .. v
  end
  table.sort(list)
  return list
end

-- A stdio option -> what spawn() takes: nil, "pipe", "devnull", "stdout"
-- or an fd (from an integer or anything with fileno()).
local function make_stdio(v, name, level)
  if v == nil then return nil end
  if v == M.PIPE then return "pipe" end
  if v == M.DEVNULL then return "devnull" end
  if v == M.STDOUT then
    if name ~= "stderr" then
      errors.throw("ValueError", "STDOUT is only valid for stderr",
                   level + 1)
    end
    return "stdout"
  end
  if math.type(v) == "integer" and v >= 0 then return v end
  if (type(v) == "table" or type(v) == "userdata") and v.fileno then
    return v:fileno()
  end
  errors.throw("ValueError", ("bad value for %s: %s"):format(
    name, tostring(v)), level + 1)
end

---------------------------------------------------------------------------
-- pipe files: p.stdin, p.stdout, p.stderr

local File = {}
File.__index = File
File.__close = function(self) self:close() end
File.__name = "subprocess.file"

local function new_file(rawpipe, mode)
  return setmetatable({ _raw = rawpipe, _buf = "", mode = mode,
                        closed = false }, File)
end

function File:fileno() return self._raw:fileno() end

-- One read of at most n bytes, waiting until some are there; "" at end.
function File:read1(n)
  n = n or CHUNK
  if #self._buf > 0 then
    local out = self._buf:sub(1, n)
    self._buf = self._buf:sub(n + 1)
    return out
  end
  while true do
    local data, errno = self._raw:read(n > (1 << 20) and (1 << 20) or n)
    if data then return data end
    if errno ~= EAGAIN then errors.raise(errno, 2) end
    local ok, err = task.wait(self._raw:fileno(), READ, nil)
    if ok == nil then errors.raise(err, 2) end
  end
end

-- read([n]) -> bytes: n bytes or up to end of stream; all when n is nil
-- or negative (Python's BufferedReader.read).
function File:read(n)
  local parts, got = {}, 0
  while n == nil or n < 0 or got < n do
    local want = (n == nil or n < 0) and CHUNK or math.min(n - got, CHUNK)
    local data = self:read1(want)
    if data == "" then break end
    parts[#parts + 1] = data
    got = got + #data
  end
  return table.concat(parts)
end

-- readline() -> one line with its "\n", or what is left at end ("").
function File:readline()
  while true do
    local i = self._buf:find("\n", 1, true)
    if i then
      local line = self._buf:sub(1, i)
      self._buf = self._buf:sub(i + 1)
      return line
    end
    local buffered = self._buf
    self._buf = ""
    local data = self:read1(CHUNK)
    if data == "" then return buffered end
    self._buf = buffered .. data
  end
end

-- lines() -> iterator over lines (each with its "\n"), as `for line in f`.
function File:lines()
  return function()
    local line = self:readline()
    if line ~= "" then return line end
  end
end

-- write(data) -> #data; waits until every byte is in the pipe. A reader
-- that has gone raises BrokenPipeError.
function File:write(data)
  data = check_bytes(data, "write()", 2)
  local i = 1
  while i <= #data do
    local n, errno = self._raw:write(data, i)
    if n then
      i = i + n
    elseif errno == EAGAIN then
      local ok, err = task.wait(self._raw:fileno(), WRITE, nil)
      if ok == nil then errors.raise(err, 2) end
    else
      errors.raise(errno, 2)
    end
  end
  return #data
end

function File:flush() end

function File:close()
  self.closed = true
  self._raw:close()
end

---------------------------------------------------------------------------
-- Popen

local Popen = {}
Popen.__index = Popen
Popen.__name = "subprocess.Popen"

local function wake_all(set)
  for co in pairs(set) do
    set[co] = nil
    task.wakeup(co, true)
  end
end

-- Popen(args, opts) -> process. opts: stdin, stdout, stderr (PIPE,
-- DEVNULL, STDOUT, an fd or an object with fileno()), cwd, env, shell,
-- executable. Raises FileNotFoundError / PermissionError when the program
-- cannot be started, as Python does.
function M.Popen(args, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    errors.throw("TypeError", "Popen options must be a table", 2)
  end
  if opts.text or opts.universal_newlines or opts.encoding then
    errors.throw("ValueError", "text mode is not supported; data is bytes",
                 2)
  end
  local argv = make_argv(args, opts.shell, 2)
  local self = setmetatable({
    args = args, returncode = nil, _waiters = {},
  }, Popen)
  local spec = {
    env = make_env(opts.env, 2),
    cwd = opts.cwd ~= nil and check_str(opts.cwd, "cwd", 2) or nil,
    file = opts.executable ~= nil
           and check_str(opts.executable, "executable", 2) or nil,
    stdin = make_stdio(opts.stdin, "stdin", 2),
    stdout = make_stdio(opts.stdout, "stdout", 2),
    stderr = make_stdio(opts.stderr, "stderr", 2),
    onexit = function(code)
      self.returncode = code
      wake_all(self._waiters)
    end,
  }
  local proc, pin, pout, perr = raw.spawn(argv, spec)
  if not proc then
    local errno = pin
    local name = spec.file or argv[1]
    -- Python names the cwd when it is the part that is missing.
    if spec.cwd and errno == E.ENOENT then
      local f = io.open(spec.cwd .. "/.")
      if f then f:close() else name = spec.cwd end
    end
    error(errors.from_errno(errno, name), 2)
  end
  self._proc = proc
  self.pid = proc:pid()
  self.stdin = pin and new_file(pin, "wb") or nil
  self.stdout = pout and new_file(pout, "rb") or nil
  self.stderr = perr and new_file(perr, "rb") or nil
  return self
end

-- poll() -> returncode, or nil while the child runs.
function Popen:poll()
  return self.returncode
end

local function timeout_expired(self, timeout, out, err)
  return errors.new("TimeoutExpired", ("Command '%s' timed out after %s "
    .. "seconds"):format(repr(self.args), tostring(timeout)), {
    cmd = self.args, timeout = timeout, output = out, stdout = out,
    stderr = err,
  })
end

local function current(what)
  local co = task.current()
  if co == nil then
    errors.throw("RuntimeError", what .. " must run inside a task", 3)
  end
  return co
end

-- wait([timeout]) -> returncode; TimeoutExpired when timeout passes first.
function Popen:wait(timeout)
  if self.returncode ~= nil then return self.returncode end
  local co = current("wait()")
  local deadline = task.deadline(timeout)
  self._waiters[co] = true
  while self.returncode == nil do
    if task.suspend(deadline) == false and self.returncode == nil then
      self._waiters[co] = nil
      error(timeout_expired(self, timeout), 2)
    end
  end
  self._waiters[co] = nil
  return self.returncode
end

-- The tasks communicate() starts: one writer for stdin, one reader per
-- output pipe. They run on after a TimeoutExpired, so a second call
-- picks up where the first stopped, as in Python.
local function start_comm(self, input)
  local c = { out = {}, err = {}, pending = 0, waiters = {}, errs = {} }
  local function helper(fn)
    c.pending = c.pending + 1
    task.spawn_daemon(function()
      local ok, err = pcall(fn)
      if not ok then c.errs[#c.errs + 1] = err end
      c.pending = c.pending - 1
      if c.pending == 0 then wake_all(c.waiters) end
    end)
  end
  local function reader(file, into)
    helper(function()
      while true do
        local ok, data = pcall(file.read1, file, CHUNK)
        if not ok then
          -- Closed under us (after a kill, see run): what we have is it.
          if errors.isinstance(data, "OSError") and data.errno == EBADF
          then return end
          error(data, 0)
        end
        if data == "" then break end
        into[#into + 1] = data
      end
      file:close()
    end)
  end
  if self.stdin then
    if input ~= nil and input ~= "" then
      local stdin = self.stdin
      helper(function()
        local ok, err = pcall(stdin.write, stdin, input)
        -- A child that exits without reading all input is no error.
        if not ok and not (errors.isinstance(err, "OSError")
                           and (err.errno == EPIPE or err.errno == EBADF))
        then error(err, 0) end
        stdin:close()
      end)
    else
      self.stdin:close()
    end
  end
  if self.stdout then reader(self.stdout, c.out) end
  if self.stderr then reader(self.stderr, c.err) end
  return c
end

local function collected(self, c)
  return self.stdout and table.concat(c.out) or nil,
         self.stderr and table.concat(c.err) or nil
end

-- communicate([input [, timeout]]) -> stdout, stderr (nil for a stream
-- that is not a pipe). Sends input, reads both pipes to their end and
-- waits for the child. On TimeoutExpired the child keeps running; call
-- again (after kill(), say) to collect the rest.
function Popen:communicate(input, timeout)
  if type(input) == "table" then           -- keyword form
    input, timeout = input.input, input.timeout
  end
  if input ~= nil then check_bytes(input, "input", 2) end
  local c = self._comm
  if c == nil then
    if input ~= nil and input ~= "" and not self.stdin then
      errors.throw("ValueError", "input given but stdin is not a pipe", 2)
    end
    c = start_comm(self, input)
    self._comm = c
  elseif input ~= nil and input ~= "" then
    errors.throw("ValueError",
                 "Cannot send input after starting communication", 2)
  end
  local deadline = task.deadline(timeout)
  if c.pending > 0 then
    local co = current("communicate()")
    c.waiters[co] = true
    while c.pending > 0 do
      if task.suspend(deadline) == false and c.pending > 0 then
        c.waiters[co] = nil
        error(timeout_expired(self, timeout, collected(self, c)), 2)
      end
    end
    c.waiters[co] = nil
  end
  if #c.errs > 0 then error(c.errs[1], 2) end
  if self.returncode == nil then
    local remaining = deadline and math.max(0, deadline - task.now()) / 1000
    local ok, err = pcall(self.wait, self, remaining)
    if not ok then
      if errors.isinstance(err, "TimeoutExpired") then
        error(timeout_expired(self, timeout, collected(self, c)), 2)
      end
      error(err, 0)
    end
  end
  return collected(self, c)
end

-- send_signal(sig): to the child, unless it has been reaped already.
function Popen:send_signal(sig)
  if self.returncode ~= nil then return end
  local ok, errno = self._proc:kill(sig)
  if not ok and errno ~= E.ESRCH then errors.raise(errno, 2) end
end

function Popen:terminate() self:send_signal(M.SIGTERM) end
function Popen:kill() self:send_signal(M.SIGKILL) end

-- killpg([sig]): signal the child's whole process group (default
-- SIGKILL), grandchildren included. Not in Python's Popen: there it is
-- os.killpg(p.pid, sig).
function Popen:killpg(sig)
  local ok, errno = self._proc:killpg(sig or M.SIGKILL)
  if not ok and errno ~= E.ESRCH then errors.raise(errno, 2) end
end

-- Close the pipes; for `local p <close> = Popen(...)`, which then waits
-- for the child as Python's `with Popen(...)` does.
function Popen:__close()
  for _, f in ipairs { self.stdout, self.stderr, self.stdin } do
    if f and not f.closed then f:close() end
  end
  if self.returncode == nil and task.current() then self:wait() end
end

function Popen:__tostring()
  return ("<Popen: returncode: %s args: %s>"):format(
    tostring(self.returncode), repr(self.args))
end

---------------------------------------------------------------------------
-- run

local CompletedProcess = {}
CompletedProcess.__index = CompletedProcess
CompletedProcess.__name = "subprocess.CompletedProcess"

local function called_process_error(rc, cmd, out, err)
  local msg
  if rc < 0 then
    msg = ("Command '%s' died with signal %d."):format(repr(cmd), -rc)
  else
    msg = ("Command '%s' returned non-zero exit status %d."):format(
      repr(cmd), rc)
  end
  return errors.new("CalledProcessError", msg, {
    returncode = rc, cmd = cmd, output = out, stdout = out, stderr = err,
  })
end

function M.CompletedProcess(args, returncode, stdout, stderr)
  return setmetatable({ args = args, returncode = returncode,
                        stdout = stdout, stderr = stderr }, CompletedProcess)
end

-- check_returncode(): raise CalledProcessError if returncode is not 0.
function CompletedProcess:check_returncode()
  if self.returncode ~= 0 then
    error(called_process_error(self.returncode, self.args, self.stdout,
                               self.stderr), 2)
  end
end

-- Python's repr of bytes: b'...' with \n, \t, \xNN escapes.
local function bytes_repr(b)
  local esc = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                ["\\"] = "\\\\", ["'"] = "\\'" }
  return "b'" .. b:gsub("[%c\\'\128-\255]", function(c)
    return esc[c] or ("\\x%02x"):format(c:byte())
  end) .. "'"
end

function CompletedProcess:__tostring()
  local s = ("CompletedProcess(args=%s, returncode=%d"):format(
    repr(self.args), self.returncode)
  if self.stdout then s = s .. ", stdout=" .. bytes_repr(self.stdout) end
  if self.stderr then s = s .. ", stderr=" .. bytes_repr(self.stderr) end
  return s .. ")"
end

local RUN_ONLY = { input = true, capture_output = true, timeout = true,
                   check = true }

-- After a kill: give the pipes a moment to reach end of stream (a
-- process that left the group may still hold them), then close them.
local DRAIN_GRACE = 1.0

local function reap_after_kill(p)
  local ok = pcall(p.communicate, p, nil, DRAIN_GRACE)
  if not ok then
    for _, f in ipairs { p.stdout, p.stderr, p.stdin } do
      if f and not f.closed then f:close() end
    end
    p:wait()
  end
  return collected(p, p._comm)
end

-- run(args [, opts]) -> CompletedProcess. opts: Popen's plus input,
-- capture_output, timeout, check.
function M.run(args, opts)
  opts = opts or {}
  local popts = {}
  for k, v in pairs(opts) do
    if not RUN_ONLY[k] then popts[k] = v end
  end
  if opts.input ~= nil then
    if opts.stdin ~= nil then
      errors.throw("ValueError",
                   "stdin and input arguments may not both be used.", 2)
    end
    popts.stdin = M.PIPE
  end
  if opts.capture_output then
    if opts.stdout ~= nil or opts.stderr ~= nil then
      errors.throw("ValueError", "stdout and stderr arguments may not be "
                   .. "used with capture_output.", 2)
    end
    popts.stdout, popts.stderr = M.PIPE, M.PIPE
  end
  local p = M.Popen(args, popts)
  local ok, out, err = pcall(p.communicate, p, opts.input, opts.timeout)
  if not ok then
    local exc = out
    p:killpg(M.SIGKILL)
    out, err = reap_after_kill(p)
    if errors.isinstance(exc, "TimeoutExpired") then
      exc.output, exc.stdout, exc.stderr = out, out, err
    end
    error(exc, 2)
  end
  local cp = M.CompletedProcess(args, p.returncode, out, err)
  if opts.check then cp:check_returncode() end
  return cp
end

-- call / check_call / check_output, the older API, on top of run().
function M.call(args, opts)
  return M.run(args, opts).returncode
end

function M.check_call(args, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.check = true
  M.run(args, o)
  return 0
end

function M.check_output(args, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.check, o.stdout = true, M.PIPE
  return M.run(args, o).stdout
end

-- Children of this loop not yet reaped (for tests and leak checks).
M._count = raw.count
-- moonsock helpers, not Python's (os.lstat, os.path.realpath, os.getuid
-- live elsewhere there): stat(path) -> mode, uid, kind | nil, errno;
-- realpath(path) -> path | nil, errno; getuid() -> uid.
M._stat, M._realpath, M._getuid = raw.stat, raw.realpath, raw.getuid

M.TimeoutExpired = errors.TimeoutExpired
M.CalledProcessError = errors.CalledProcessError
M.SubprocessError = errors.SubprocessError

return M
