-- boot.lua -- the main task of a moonsock program.
--
-- Runs the script's main chunk (already compiled by host.c) with its
-- arguments. A chunk that returns nothing was a program: moonsock exits
-- when it and its non-daemon threads are done. A chunk that returns a
-- handler table is served (socketserver.serve_script). An uncaught error
-- is printed as "moonsock: message" with a traceback and the program exits
-- with status 1, as lua.c does.

local task = require "moonsock.task"
local host = require "_moonsock.host"

local function handler(err)
  local ok, msg = pcall(tostring, err)
  if not ok or type(msg) ~= "string" then msg = "(error object)" end
  return debug.traceback(msg, 2)
end

local function fail(msg, status)
  io.stderr:write("moonsock: ", msg, "\n")
  io.stderr:flush()
  task.setstatus(status or 1)
  task.stop()
end

return function(chunk, path, ...)
  local ok, result = xpcall(chunk, handler, ...)
  if not ok then return fail(result) end
  if result == nil then return end
  if type(result) ~= "table" or type(result.handle) ~= "function" then
    return fail(("%s returned a %s; a handler table needs a handle "
                 .. "function (or return nothing from a program)")
                :format(path, type(result)), 2)
  end
  local serve_ok, err = xpcall(require("moonsock.serve").serve_script,
                               handler, result, path, host.options())
  if not serve_ok then return fail(err) end
end
