-- 6-get-no-empty-part.lua -- a failed download left an empty FILE.part.
--
-- What broke: upload_client.lua's get created FILE.part before it had
-- connected, so a refused connection or a server error (NOT_FOUND) left
-- an empty FILE.part in the user's directory. The fix: the file is
-- created only after the server has answered OK with the size.
package.path = "./tests/lua/?.lua;" .. package.path
local exe = require("moonsock_exe")()
local root = io.popen("pwd"):read("l")
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir " .. dir))
-- Port 1 on loopback: nothing listens there, the connection is refused.
local cmd = ("cd %s && %s %s/scripts/upload_client.lua get 127.0.0.1 1 "
             .. "x.bin 2>&1"):format(dir, exe, root)
local p = io.popen(cmd)
local out = p:read("a")
local _, _, status = p:close()
assert(status == 1, ("status %s: %s"):format(status, out))
assert(out:find("cannot connect", 1, true), out)
local f = io.open(dir .. "/x.bin.part", "rb")
assert(f == nil, "an empty x.bin.part was left behind")
assert(os.execute("rmdir " .. dir))
print("ok")
