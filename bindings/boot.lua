-- boot.lua -- the main task of a moonsock program.
--
-- Runs the script's main chunk (already compiled by host.c) with its
-- arguments. A chunk that returns nothing was a program: moonsock exits
-- when it and its non-daemon threads are done. A chunk that returns a
-- handler table is served (serve.serve_script, built on socketserver).
-- An uncaught error is printed as "moonsock: message" with a traceback
-- and the program exits with status 1, as lua.c does. SystemExit, as in
-- Python (errors.exit), ends the program without a traceback: its code
-- is the status, and a message, if any, is printed.
--
-- As Python puts a script's directory first on sys.path, the script's
-- directory comes first on package.path, so a handler's own modules are
-- found wherever moonsock is started from (and hot reload watches them).

local task = require "moonsock.task"
local host = require "_moonsock.host"
local errors = require "moonsock.errors"

local function handler(err)
  if errors.isinstance(err, "SystemExit") then return err end
  local ok, msg = pcall(tostring, err)
  if not ok or type(msg) ~= "string" then msg = "(error object)" end
  return debug.traceback(msg, 2)
end

-- The message goes to the host (msk_host_error); the moonsock program
-- prints it as "moonsock: message", an embedding host where it likes.
local function fail(msg, status)
  host.seterror(msg)
  task.setstatus(status or 1)
  task.stop()
end

local function add_script_dir(path)
  local dir = path:match("^(.*)/[^/]*$")
  if dir == nil then dir = "." elseif dir == "" then dir = "/" end
  local entries = dir .. "/?.lua;" .. dir .. "/?/init.lua;"
  if package.path:sub(1, #entries) ~= entries then
    package.path = entries .. package.path
  end
end

return function(chunk, path, ...)
  add_script_dir(path)
  local args = table.pack(...)
  local ok, result = xpcall(chunk, handler, ...)
  if not ok and errors.isinstance(result, "SystemExit") then
    if result.message == nil then
      task.setstatus(result.code or 0)
      return task.stop()
    end
    return fail(tostring(result.message), result.code or 1)
  end
  if not ok then return fail(result) end
  if result == nil then return end
  if type(result) ~= "table" or type(result.handle) ~= "function" then
    return fail(("%s returned a %s; a handler table needs a handle "
                 .. "function (or return nothing from a program)")
                :format(path, type(result)), 2)
  end
  -- Serving fails on configuration (a bad address, a port in use): say
  -- what, without a traceback, as for a bad command-line option.
  local serve_ok, err = pcall(require("moonsock.serve").serve_script,
                              result, path, host.options(), args)
  if not serve_ok then return fail(tostring(err)) end
end
