-- 5-client-usage-status.lua -- command_client.lua's errors lost their status.
--
-- What broke: the client's die() returned 255, and the main chunk ended
-- with `return die(...)`, so moonsock took the 255 for a handler table
-- that was not one, printed "returned a number; a handler table needs a
-- handle function" and exited 2 instead of the documented 255
-- (docs/command.md). The fix: die() sets the status and returns nothing,
-- so the chunk ends as a program.
package.path = "./tests/lua/?.lua;" .. package.path
local exe = require("moonsock_exe")()
local function run(args)
  local p = io.popen(("%s scripts/command_client.lua %s 2>&1"):format(exe,
                                                                    args))
  local out = p:read("a")
  local _, _, status = p:close()
  return status, out
end
for _, args in ipairs { "", "127.0.0.1 1 --key-file /nonexistent -- true",
                        "127.0.0.1 1 --bogus" } do
  local status, out = run(args)
  assert(status == 255, ("%q: status %s: %s"):format(args, status, out))
  assert(out:find("command_client: ", 1, true), out)
  assert(not out:find("handler table", 1, true), out)
end
print("ok")
