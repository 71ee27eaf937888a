-- reload.lua -- hot reload of a served handler script, as a transaction.
--
-- A Reloader belongs to one server (serve.lua's script server). It
-- watches the script and the project's Lua modules the script loaded (C
-- file watches from reload.c: inotify, or mtime polling), and reloads on a
-- change, on SIGHUP (serve.lua) or when Lua calls server:reload().
--
-- A reload compiles the script into a fresh environment (globals it
-- defines go to that table, reading falls through to _G) and runs it
-- there with the script's arguments; the project modules it requires are
-- loaded anew into the same environment. Only when it has returned a
-- valid handler table, and its optional reload(server, old) hook has run,
-- does the server switch: server.handler becomes the new table, which new
-- connections get and live connections reach at their next method call
-- (serve.lua looks methods up through server.handler). Any failure leaves
-- the serving version as it was and logs why, with file:line. Listeners
-- and connections are never touched here.
--
-- Changes are debounced (SETTLE_MS of quiet) because an editor writing in
-- place produces several events, and a reload whose files are byte for
-- byte what the last attempt saw is skipped.

local raw = require "_moonsock.reload"
local task = require "moonsock.task"
local threading = require "threading"
local rawtask = require "_moonsock.task"

local M = {}

M.SETTLE_MS = 20

local Reloader = {}
Reloader.__index = Reloader

local function dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end
M.dirname = dirname

-- A module file is the project's when it was found through a relative
-- entry of package.path (the script's directory, when the script was
-- named relatively, or ./?.lua) or lies under the script's directory.
-- System modules (/usr/share/lua/...) are not watched and not reloaded.
local function is_project(self, file)
  if file:sub(1, 1) ~= "/" then return true end
  local dir = self.dir
  return dir:sub(1, 1) == "/" and file:sub(1, #dir + 1) == dir .. "/"
end

-- The project modules already loaded (by the first version, which ran in
-- the global environment): name -> file.
local function loaded_project_modules(self)
  local out = {}
  for name in pairs(package.loaded) do
    if type(name) == "string" and package.preload[name] == nil then
      local file = package.searchpath(name, package.path)
      if file and is_project(self, file) then out[name] = file end
    end
  end
  return out
end

local function read_file(path)
  local f = io.open(path, "rb")
  if f == nil then return false end
  local data = f:read("a")
  f:close()
  return data or false
end

-- The bytes of every watched file, to tell a real change from a repeat.
local function snapshot(self)
  local s = {}
  for file in pairs(self.files) do s[file] = read_file(file) end
  return s
end

local function same(a, b)
  if a == nil or b == nil then return false end
  for k, v in pairs(a) do if b[k] ~= v then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function watch_file(self, file)
  if not self.files[file] then
    self.files[file] = true
  end
  if self.watcher then
    local ok, errno = self.watcher:add(file)
    if not ok then
      task.log(task.WARN, ("reload: cannot watch %s (errno %d)")
               :format(file, errno))
    end
  end
end

-- new(server, opts) -> reloader. opts: path (the script), args (its
-- arguments, with n), watch (bool: follow file changes), poll_ms (force
-- mtime polling at this interval), validate(handler) -> nil | message.
function M.new(server, opts)
  local self = setmetatable({
    server = server, path = opts.path, dir = dirname(opts.path),
    args = opts.args or { n = 0 }, validate = opts.validate,
    files = {}, lock = threading.Lock(), closed = false,
  }, Reloader)
  self.files[self.path] = true
  for _, file in pairs(loaded_project_modules(self)) do
    self.files[file] = true
  end
  self.sources = snapshot(self)
  if opts.watch then
    local poll = opts.poll_ms
    local w, errno = raw.watcher(function(path) self:on_change(path) end,
                                 poll or 0, poll ~= nil)
    if w == nil then
      task.log(task.WARN, ("reload: cannot watch files (errno %d); "
                           .. "reload with SIGHUP"):format(errno))
    else
      self.watcher = w
      for file in pairs(self.files) do watch_file(self, file) end
      task.log(task.DEBUG, ("reload: watching %s%s"):format(self.path,
        poll and (" (polling every %d ms)"):format(poll) or ""))
    end
  end
  return self
end

-- on_change(path): a watched file changed. Runs in its own task; waits
-- until the files have been quiet for SETTLE_MS, then reloads once.
function Reloader:on_change(path)
  if self.closed then return end
  self.last_change = task.now()
  self.changed = path
  if self.settling then return end
  self.settling = true
  while true do
    local quiet = task.now() - self.last_change
    if quiet >= M.SETTLE_MS then break end
    task.sleep((M.SETTLE_MS - quiet) / 1000)
  end
  self.settling = false
  if self.closed then return end
  self:reload("change of " .. self.changed, true)
end

local LOADING = {}

-- require() inside a new version: the project's modules are loaded
-- again into the version's environment (once per version); everything
-- else is the ordinary require.
local function version_require(self, ver, name)
  local v = ver.modules[name]
  if v == LOADING then
    error(("loop or previous error loading module '%s'"):format(name), 2)
  end
  if v ~= nil then return v, ver.paths[name] end
  if package.preload[name] == nil then
    local file = package.searchpath(name, package.path)
    if file and is_project(self, file) then
      ver.modules[name] = LOADING
      local chunk, err = raw.compile(file, ver.env)
      if chunk == nil then
        ver.modules[name] = nil
        error(("error loading module '%s' from file '%s':\n\t%s")
              :format(name, file, err), 2)
      end
      local result = chunk(name, file)
      if result == nil then result = true end
      ver.modules[name], ver.paths[name] = result, file
      ver.files[file] = true
      return result, file
    end
  end
  return require(name)
end

local function traceback(err)
  local ok, msg = pcall(tostring, err)
  if not ok or type(msg) ~= "string" then msg = "(error object)" end
  return debug.traceback(msg, 2)
end

-- Compile, run and check a new version. -> handler, ver | nil, message
local function load_version(self)
  local ver = { modules = {}, paths = {}, files = {} }
  local env = setmetatable({}, { __index = _G })
  env.require = function(name) return version_require(self, ver, name) end
  ver.env = env
  local chunk, err = raw.compile(self.path, env)
  if chunk == nil then return nil, err end
  local ok, result = xpcall(chunk, traceback,
                            table.unpack(self.args, 1, self.args.n))
  if not ok then return nil, result end
  if type(result) ~= "table" or type(result.handle) ~= "function" then
    local what = type(result) == "table" and "a table without a handle "
                 .. "function" or ("a " .. type(result))
    return nil, ("%s returned %s; a handler table needs a handle "
                 .. "function"):format(self.path, what)
  end
  if self.validate then
    local msg = self.validate(result)
    if msg then return nil, ("%s: %s"):format(self.path, msg) end
  end
  local hook = result.reload
  if type(hook) == "function" then
    local hok, herr = xpcall(hook, traceback, self.server,
                             self.server.handler)
    if not hok then return nil, "reload hook failed: " .. herr end
  end
  return result, ver
end

function Reloader:_reload(trigger, if_changed)
  local server = self.server
  local sources = snapshot(self)
  if if_changed and same(sources, self.sources) then
    task.log(task.DEBUG, ("reload: %s unchanged (%s); nothing to do")
             :format(self.path, trigger))
    return true, server.version
  end
  if sources[self.path] == "" and if_changed then
    -- An editor that truncates and then writes leaves an empty file for
    -- a moment; that is a write in progress (its end brings another
    -- event), and an empty file is never a handler anyway.
    task.log(task.DEBUG, ("reload: %s is empty; waiting for the write")
             :format(self.path))
    return true, server.version
  end
  self.sources = sources
  local t0 = rawtask.monotonic()
  local handler, ver = load_version(self)
  if handler == nil then
    local err = ver
    server.failed_reloads = server.failed_reloads + 1
    server.last_error = err
    server.last_reload_ok = false
    task.log(task.ERROR, ("reload of %s failed (%s); version %d keeps "
                          .. "serving (%d failed so far): %s")
             :format(self.path, trigger, server.version,
                     server.failed_reloads, err))
    return false, err
  end
  -- The transaction commits: nothing below can fail.
  for name, v in pairs(ver.modules) do package.loaded[name] = v end
  for file in pairs(ver.files) do watch_file(self, file) end
  server.handler = handler
  server.RequestHandlerClass = handler
  server.version = server.version + 1
  server.reloads = server.reloads + 1
  server.last_reload_ok = true
  task.log(task.INFO, ("reloaded %s: version %d (reload %d, %s) in "
                       .. "%.1f ms"):format(self.path, server.version,
                                            server.reloads, trigger,
                                            (rawtask.monotonic() - t0)
                                            * 1000))
  return true, server.version
end

-- reload(trigger[, if_changed]) -> true, version | false, message.
-- One reload at a time: a second caller waits for the first.
function Reloader:reload(trigger, if_changed)
  if self.closed then return false, "the server is closed" end
  self.lock:acquire()
  local ok, a, b = pcall(self._reload, self, trigger or "Lua call",
                         if_changed)
  self.lock:release()
  if not ok then error(a, 0) end
  return a, b
end

-- close(): stop watching. Idempotent.
function Reloader:close()
  self.closed = true
  if self.watcher then
    self.watcher:close()
    self.watcher = nil
  end
end

return M
