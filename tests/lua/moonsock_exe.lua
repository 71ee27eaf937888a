-- moonsock_exe.lua -- the path of the moonsock binary running this spec,
-- for specs that start a child moonsock (input(), program exit rules).
--
-- The shell io.popen starts is the binary's child, so /proc/$PPID names
-- it. Under valgrind /proc/$PPID/exe is valgrind's tool, so the command
-- line is searched too; MOONSOCK (as the black-box tests set it) and the
-- default build are the last resort.
return function()
  local p = io.popen("readlink /proc/$PPID/exe; "
                     .. "tr '\\0' '\\n' < /proc/$PPID/cmdline")
  local lines = p:read("a")
  p:close()
  for line in lines:gmatch("[^\n]+") do
    if line:match("moonsock$") then return line end
  end
  return os.getenv("MOONSOCK") or "./build/moonsock"
end
