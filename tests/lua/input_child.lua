-- input_child.lua -- run by task_spec.lua as `moonsock input_child.lua`
-- with a pipe on stdin: input() must wait for a line without stopping
-- the other tasks (a ticker thread keeps counting while it waits), strip
-- the line ending, return a last unterminated line, then raise EOFError.

local threading = require "threading"
local time = require "time"

local ticks = 0
threading.Thread{daemon = true, target = function()
  while true do
    ticks = ticks + 1
    time.sleep(0.01)
  end
end}:start()

local first = input("name? ")
print(("\nfirst=%s ticked=%s"):format(first, tostring(ticks >= 3)))
print(("second=%s"):format(input()))
print(("third=%s"):format(input()))
local ok, err = pcall(input)
print(("eof=%s %s"):format(tostring(ok), tostring(err)))
