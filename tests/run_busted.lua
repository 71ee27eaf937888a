-- run_busted.lua -- run busted inside the moonsock binary.
--
-- Specs then run as a task of the real runtime: a blocking call in a spec
-- suspends only the spec's task, so a spec can start a server in a green
-- thread and talk to it from the spec body. The project's Lua paths come
-- first; Debian's LuaSocket is also called `socket`, and ours (preloaded)
-- must win -- socket_spec.lua checks it.
package.path = "./scripts/?.lua;./tests/lua/?.lua;" .. package.path
require "busted.runner" { standalone = false }
