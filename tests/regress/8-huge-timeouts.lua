-- 8-huge-timeouts.lua -- huge timeouts timed out at once or spun.
--
-- What broke: task.deadline() turns a timeout into absolute monotonic
-- milliseconds. For settimeout(1e300) or math.huge that is a float with
-- no integer representation, and task.c read it with lua_tointeger,
-- which gives 0: a deadline in the past. recv raised TimeoutError at
-- once, and time.sleep(1e300) -- which loops until now() >= deadline --
-- re-armed an already-expired timer forever, a busy loop at 100% CPU.
-- Outside the loop, fdwait raised "number has no integer representation".
-- The fix: task.c reads deadlines with todeadline(), which clamps any
-- number to the int64 range (the core clamps further), so a huge timeout
-- means "never"; time.sleep(nan) is a ValueError, as in Python.
local socket = require "socket"
local time = require "time"
local threading = require "threading"

local a, b = socket.socketpair()
a:settimeout(1e300)
local got
threading.Thread{target = function() got = a:recv(10) end,
                 daemon = true}:start()
local slept = false
threading.Thread{target = function() time.sleep(math.huge); slept = true end,
                 daemon = true}:start()
local c0 = os.clock()
time.sleep(0.2)
assert(got == nil, "recv with a huge timeout returned early")
assert(not slept, "sleep(math.huge) returned")
assert(os.clock() - c0 < 0.1, "a huge sleep spins the CPU")
b:send("x")
time.sleep(0.05)
assert(got == "x", "recv with a huge timeout missed its data")
local ok, err = pcall(time.sleep, 0 / 0)
assert(not ok and err.name == "ValueError", "sleep(nan) must be refused")
-- Outside any task's wait: the blocking path takes floats too.
local task = require "moonsock.task"
assert(task.wait(b, task.WRITE, 1e300) == true)
a:close(); b:close()
print("ok")
