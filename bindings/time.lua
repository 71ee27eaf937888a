-- time.lua -- the parts of Python's time module that moonsock programs
-- need: sleep() suspends only the calling task; time() is wall-clock
-- seconds, monotonic() and perf_counter() never go backwards.

local task = require "moonsock.task"
local raw = require "_moonsock.task"

local M = {}

M.sleep = task.sleep
M.monotonic = raw.monotonic
M.perf_counter = raw.monotonic

-- time() -> seconds since the epoch, as a float with sub-second part.
function M.time()
  return raw.walltime()
end

return M
