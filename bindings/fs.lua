-- fs.lua -- moonsock.fs: files and directory handles, Python's os names.
--
-- The Lua half of _moonsock.fs (fs.c, over core/file.c). Functions are
-- named and behave as in Python's os module, raising its exceptions
-- (FileNotFoundError, FileExistsError, OSError [Errno 40] for a symlink,
-- ...) with the file name in the message. Python's keyword arguments
-- (dir_fd=, follow_symlinks=) become one trailing table. Two differences,
-- both for safety: a name relative to dir_fd must be one plain component
-- (no '/'), and the last component of any path is never followed if it
-- is a symlink. Open files are objects (close(), `<close>`, collected)
-- rather than bare ints, so a failing handler cannot leak descriptors;
-- f:fileno() gives the int. Each call is one disk operation, and callers
-- that move much data yield between chunks themselves; the one call that
-- can take long whatever the size, fsync, runs on a worker thread inside
-- a task (the task waits, the others run).
--
--   local fs = require "moonsock.fs"
--   local d <close> = fs.opendir("uploads", {create = true})
--   local f <close> = fs.open("a.txt", fs.O_WRONLY | fs.O_CREAT, 420,
--                             {dir_fd = d})
--   f:pwrite("hello", 0); f:fsync()

local raw = require "_moonsock.fs"
local errors = require "moonsock.errors"
local task = require "moonsock.task"

local M = {}
local methods = {}

for k, v in pairs(raw) do
  if type(v) == "number" then M[k] = v end
end

local function fail(errno, filename, level)
  error(errors.from_errno(errno, filename), level + 1)
end

-- check(ok, errno, filename): raise for nil, errno; else return ok.
local function check(a, b, filename)
  if a == nil then fail(b, filename, 3) end
  return a, b
end

-- Split a path into its directory (opened) and last component; a path
-- with no '/' is relative to the working directory.
local function split(path)
  if type(path) ~= "string" then
    errors.throw("TypeError", "path must be a string", 4)
  end
  local dir, base = path:match("^(.*)/([^/]*)$")
  if dir == nil then return ".", path end
  if dir == "" then dir = "/" end
  return dir, base
end

-- at(path, opts) -> dir handle, name, owned: where a call on path acts
-- (owned: a handle opened here, for done() to close at once rather than
-- leave to the collector).
local function at(path, opts)
  local d = opts and opts.dir_fd
  if d ~= nil then return d, path, false end
  local dirpath, name = split(path)
  local dh, err = raw.opendir(dirpath)
  if dh == nil then fail(err, dirpath, 3) end
  return dh, name, true
end

local function done(d, owned, a, b)
  if owned then raw.close(d) end
  return a, b
end

---------------------------------------------------------------------------
-- directory handles and files

-- opendir(path[, {create = true, mode = 0o755}]) -> directory handle
function M.opendir(path, opts)
  local mode = 0
  if opts and opts.create then mode = opts.mode or 493 end
  local d, err = raw.opendir(path, mode)
  return (check(d, err, path))
end

-- open(path, flags[, mode[, {dir_fd = d}]]) -> file (os.open)
function M.open(path, flags, mode, opts)
  local d, name, owned = at(path, opts)
  local f, err = done(d, owned, raw.open(d, name, flags, mode or 438))
  if f == nil then fail(err, path, 2) end
  return f
end

function methods:close() raw.close(self) end
function methods:fileno() return raw.fileno(self) end
function methods:closed() return raw.fileno(self) < 0 end

-- f:pread(n, offset) -> up to n bytes ("" at end of file)
function methods:pread(n, offset)
  return (check(raw.pread(self, n, offset)))
end

-- f:pwrite(data, offset) -> #data (all of it, or an exception)
function methods:pwrite(data, offset)
  return (check(raw.pwrite(self, data, offset)))
end

-- fsync in a task: on a worker thread, this task waiting on the job's fd
-- (a disk that takes seconds stalls only the caller); elsewhere in place.
local EAGAIN = errors.errno.EAGAIN
local isyieldable = coroutine.isyieldable
local function sync(self, data_only)
  if task.active and isyieldable() then
    local job, fd = raw.fsync_start(self, data_only)
    if job == nil then fail(fd, nil, 3) end
    local ok, err
    repeat
      local ready, werr = task.wait(fd, task.READ, nil)
      if ready == nil then fail(werr, nil, 3) end
      ok, err = raw.fsync_result(job)
    until ok or err ~= EAGAIN
    if not ok then fail(err, nil, 3) end
    return
  end
  check(raw.fsync(self, data_only))
end
function methods:fsync() sync(self, false) end
function methods:fdatasync() sync(self, true) end
-- Start writeback of a range without waiting (a hint; see file.c).
function methods:writeback(offset, len) check(raw.writeback(self, offset,
                                                            len)) end
function methods:truncate(len) check(raw.truncate(self, len)) end
function methods:fstat() return (check(raw.stat(self))) end
function methods:getxattr(key) return raw.getxattr(self, key) end
function methods:setxattr(key, value)
  check(raw.setxattr(self, key, value))
end
methods.__close = methods.close

raw.setmethods(methods)
M.methods = methods

-- os-style module functions over a file object.
M.close = function(f) raw.close(f) end
M.pread = function(f, n, off) return f:pread(n, off) end
M.pwrite = function(f, data, off) return f:pwrite(data, off) end
M.fsync = function(f) f:fsync() end
M.fdatasync = function(f) f:fdatasync() end
M.fstat = function(f) return f:fstat() end
M.ftruncate = function(f, n) f:truncate(n) end

---------------------------------------------------------------------------
-- names

-- stat(path[, {dir_fd = d}]) -> {st_size, st_mtime, st_mtime_ns, st_mode,
-- st_ino, st_dev, is_file, is_dir, is_symlink}; never follows the last
-- component (Python's follow_symlinks=False).
function M.stat(path, opts)
  local d, name, owned = at(path, opts)
  local st, err = done(d, owned, raw.stat(d, name))
  return (check(st, err, path))
end
M.lstat = M.stat

-- rename(src, dst[, {dir_fd = d, noreplace = true}]): both names in the
-- same directory. noreplace raises FileExistsError if dst exists (atomic).
function M.rename(src, dst, opts)
  local d, sname, owned = at(src, opts)
  local dname = dst
  if not (opts and opts.dir_fd) then
    local ddir
    ddir, dname = split(dst)
    local sdir = split(src)
    if ddir ~= sdir then
      errors.throw("ValueError", "rename: both paths must be in one "
                   .. "directory", 2)
    end
  end
  local ok, err = done(d, owned, raw.rename(d, sname, dname,
                                           opts and opts.noreplace))
  check(ok, err, src)
end

-- replace(src, dst[, opts]): rename over an existing dst.
function M.replace(src, dst, opts)
  local o = { dir_fd = opts and opts.dir_fd }
  M.rename(src, dst, o)
end

-- unlink(path[, {dir_fd = d}]) (also remove)
function M.unlink(path, opts)
  local d, name, owned = at(path, opts)
  local ok, err = done(d, owned, raw.unlink(d, name))
  check(ok, err, path)
end
M.remove = M.unlink

-- listdir(dir_handle_or_path) -> sorted names (os.listdir)
function M.listdir(dir)
  local d = dir
  if type(dir) == "string" or dir == nil then
    d = M.opendir(dir or ".")
  end
  local names = check(raw.listdir(d))
  table.sort(names)
  return names
end

-- disk_usage(dir_handle_or_path) -> {total=, free=} (shutil.disk_usage;
-- free is what an unprivileged writer may still use)
function M.disk_usage(dir)
  local d = dir
  if type(dir) == "string" then d = M.opendir(dir) end
  local free, total = check(raw.space(d))
  return { total = total, free = free, used = total - free }
end

-- checkname(name) -> true | false, errno: one plain component?
function M.checkname(name)
  local ok, err = raw.checkname(name)
  if ok then return true end
  return false, err
end

-- isatty(fd) -> bool (os.isatty)
M.isatty = raw.isatty

return M
