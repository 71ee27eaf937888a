-- errors.lua -- Python's exceptions as Lua error objects.
--
-- The one place that builds error objects, so every layer raises the same
-- shape: `err.name` (Python's class name), `err.errno`, `err.strerror`,
-- `err.args`, and a __tostring that reads like Python's traceback line
-- ("ConnectionRefusedError: [Errno 111] Connection refused"). Classes form
-- Python's hierarchy: `err:isinstance("OSError")`, or
-- `errors.isinstance(err, errors.ConnectionError)`. Raise with `pcall`-able
-- `error(obj)`; catch with pcall and test the class.

local raw = require "_moonsock.socket"

local M = {}

local classes = {}       -- name -> class table
local Error = {}         -- methods of every error object
Error.__index = Error

-- Python's built-in hierarchy (the parts moonsock raises).
local parents = {
  BaseException = false,
  Exception = "BaseException",
  KeyboardInterrupt = "BaseException",
  SystemExit = "BaseException",
  OSError = "Exception",
  BlockingIOError = "OSError",
  ChildProcessError = "OSError",
  ConnectionError = "OSError",
  BrokenPipeError = "ConnectionError",
  ConnectionAbortedError = "ConnectionError",
  ConnectionRefusedError = "ConnectionError",
  ConnectionResetError = "ConnectionError",
  FileExistsError = "OSError",
  FileNotFoundError = "OSError",
  InterruptedError = "OSError",
  IsADirectoryError = "OSError",
  NotADirectoryError = "OSError",
  PermissionError = "OSError",
  ProcessLookupError = "OSError",
  TimeoutError = "OSError",
  gaierror = "OSError",
  herror = "OSError",
  ValueError = "Exception",
  TypeError = "Exception",
  RuntimeError = "Exception",
  EOFError = "Exception",
  OverflowError = "Exception",
  KeyError = "Exception",
  SubprocessError = "Exception",
  TimeoutExpired = "SubprocessError",
  CalledProcessError = "SubprocessError",
}

for name in pairs(parents) do
  classes[name] = { __name = name }
end
for name, parent in pairs(parents) do
  classes[name].parent = parent and classes[parent] or nil
end

-- errno -> class, as Python's OSError constructor maps them (PEP 3151).
local E = {
  EAGAIN = 11, EALREADY = 114, EINPROGRESS = 115, ECHILD = 10,
  EPIPE = 32, ESHUTDOWN = 108, ECONNABORTED = 103, ECONNREFUSED = 111,
  ECONNRESET = 104, EEXIST = 17, ENOENT = 2, EINTR = 4, EISDIR = 21,
  ENOTDIR = 20, EACCES = 13, EPERM = 1, ESRCH = 3, ETIMEDOUT = 110,
  EBADF = 9, EBUSY = 16, EINVAL = 22, EMFILE = 24, ENFILE = 23,
  ENOMEM = 12, EADDRINUSE = 98, EADDRNOTAVAIL = 99, ENOTCONN = 107,
  EISCONN = 106, ENAMETOOLONG = 36, ENOSPC = 28, EDQUOT = 122,
}
M.errno = E

local by_errno = {
  [E.EAGAIN] = "BlockingIOError", [E.EALREADY] = "BlockingIOError",
  [E.EINPROGRESS] = "BlockingIOError", [E.ECHILD] = "ChildProcessError",
  [E.EPIPE] = "BrokenPipeError", [E.ESHUTDOWN] = "BrokenPipeError",
  [E.ECONNABORTED] = "ConnectionAbortedError",
  [E.ECONNREFUSED] = "ConnectionRefusedError",
  [E.ECONNRESET] = "ConnectionResetError", [E.EEXIST] = "FileExistsError",
  [E.ENOENT] = "FileNotFoundError", [E.EINTR] = "InterruptedError",
  [E.EISDIR] = "IsADirectoryError", [E.ENOTDIR] = "NotADirectoryError",
  [E.EACCES] = "PermissionError", [E.EPERM] = "PermissionError",
  [E.ESRCH] = "ProcessLookupError", [E.ETIMEDOUT] = "TimeoutError",
}

local function class_of(c)
  if type(c) == "string" then
    return classes[c]
  end
  return c
end

-- isinstance(err, class_or_name) -> bool, walking Python's hierarchy.
function M.isinstance(err, cls)
  cls = class_of(cls)
  if type(err) ~= "table" or getmetatable(err) ~= Error or cls == nil then
    return false
  end
  local c = err.class
  while c do
    if c == cls then return true end
    c = c.parent
  end
  return false
end

function Error:isinstance(cls)
  return M.isinstance(self, cls)
end

function Error.__tostring(e)
  if e.message ~= nil then
    return e.name .. ": " .. e.message
  end
  return e.name
end

-- new(name, message [, fields]) -> error object of class name.
function M.new(name, message, fields)
  local cls = assert(classes[name], name)
  local e = fields or {}
  e.name = name
  e.class = cls
  e.message = message
  e.args = e.args or { message }
  return setmetatable(e, Error)
end

-- from_errno(errno [, filename]) -> the OSError subclass for errno.
-- A negative errno is a resolver failure (gaierror), as Python numbers it.
function M.from_errno(errno, filename)
  local name = errno < 0 and "gaierror" or by_errno[errno] or "OSError"
  local strerror = raw.strerror(errno)
  local message = ("[Errno %d] %s"):format(errno, strerror)
  if filename ~= nil then
    message = message .. ": '" .. tostring(filename) .. "'"
  end
  return M.new(name, message, {
    errno = errno, strerror = strerror, filename = filename,
    args = { errno, strerror },
  })
end

-- raise(errno [, level]): throw the OSError subclass for errno.
function M.raise(errno, level)
  error(M.from_errno(errno), (level or 1) + 1)
end

-- throw(name, message [, level]): throw a non-OS Python exception.
function M.throw(name, message, level)
  error(M.new(name, message), (level or 1) + 1)
end

-- exit([code][, message]): Python's sys.exit. Raises SystemExit, which
-- ends a moonsock program without a traceback: code is the exit status
-- (default 0, or 1 with a message) and the message, if any, is printed.
function M.exit(code, message, level)
  if type(code) == "string" then code, message = nil, code end
  local e = M.new("SystemExit", message, { code = code })
  if message == nil then e.message = nil end
  error(e, (level or 1) + 1)
end

-- Python's socket.timeout: TimeoutError("timed out"), errno None.
function M.timeout(level)
  error(M.new("TimeoutError", "timed out"), (level or 1) + 1)
end

for name, cls in pairs(classes) do
  M[name] = cls
end

return M
