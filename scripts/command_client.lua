-- command_client.lua -- run commands on a moonsock command server.
--
--   moonsock scripts/command_client.lua HOST PORT [--key-file K]
--            [--cwd DIR] -- PROG ARGS...       # one command
--   moonsock scripts/command_client.lua HOST PORT [--key-file K]
--                                              # interactive
--
-- Authenticates with the shared key (docs/command.md), sends the argv,
-- and copies the command's stdout and stderr to its own as the frames
-- arrive. Exits with the remote status: the exit code, 128+N for a
-- signal, 125 when the server refused the request, 255 when the
-- connection or authentication failed. The interactive mode splits each
-- line into words (quotes and backslashes group; nothing else is
-- interpreted: there is no shell at either end).

local socket = require "socket"
local hmac = require "hmac"
local secrets = require "moonsock.secrets"
local subprocess = require "subprocess"
local task = require "moonsock.task"
local frames = require "command_frames"

local REFUSED, FAILED = 125, 255

-- die(fmt, ...): report and set the exit status. Returns nothing, so that
-- `return die(...)` ends the main chunk as a program, not as a handler.
local function die(fmt, ...)
  io.stderr:write("command_client: ", fmt:format(...), "\n")
  io.stderr:flush()
  task.setstatus(FAILED)
end

local args = { ... }
local host, port = args[1], tonumber(args[2])
local key_file = os.getenv("MOONSOCK_COMMAND_KEY_FILE")
local cwd = ""
local argv
do
  local i = 3
  while i <= #args do
    local a = args[i]
    if a == "--" then
      argv = { table.unpack(args, i + 1) }
      break
    elseif a == "--key-file" then key_file = args[i + 1]; i = i + 1
    elseif a == "--cwd" then cwd = args[i + 1] or ""; i = i + 1
    else
      return die("unknown option '%s'", a)
    end
    i = i + 1
  end
end
if host == nil or port == nil then
  return die("usage: command_client.lua HOST PORT [--key-file PATH] "
             .. "[--cwd DIR] [-- PROG ARGS...]")
end
if argv and #argv == 0 then return die("no program after --") end
if key_file == nil then
  return die("no key file (--key-file or MOONSOCK_COMMAND_KEY_FILE)")
end

local function load_key(path)
  local mode, uid, kind = subprocess._stat(path)
  if mode == nil then return nil, "cannot read key file " .. path end
  if kind ~= "file" or uid ~= subprocess._getuid() or mode & 0x3f ~= 0 then
    return nil, ("key file %s must be a regular file of yours with mode "
                 .. "600"):format(path)
  end
  local f = assert(io.open(path, "rb"))
  local key = f:read("a"):gsub("%s+$", "")
  f:close()
  return key
end

local key, kerr = load_key(key_file)
if key == nil then return die("%s", kerr) end

---------------------------------------------------------------------------

local read_frame = frames.read

local function send_frame(conn, t, id, payload)
  conn:sendall(frames.pack(t, id, payload))
end

local function mac(label, sn, cn)
  return frames.mac(key, label, sn, cn)
end

local function connect()
  local ok, conn = pcall(socket.create_connection, { host, port })
  if not ok then return nil, tostring(conn) end
  conn:setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
  local t, _, sn = read_frame(conn)
  if t ~= "N" then conn:close(); return nil, "no challenge from server" end
  local cn = secrets.token_bytes(32)
  send_frame(conn, "A", 0, cn .. mac("client", sn, cn))
  local t2, _, p = read_frame(conn)
  if t2 ~= "W" then
    conn:close()
    return nil, "authentication failed" .. (t2 == "F" and ": " .. p or "")
  end
  if not hmac.compare_digest(p, mac("server", sn, cn)) then
    conn:close()
    return nil, "the server could not prove it holds the key"
  end
  return conn
end

-- Run one command; -> the exit status for this program.
local next_id = 0
local function run(conn, dir, words)
  next_id = next_id + 1
  local id = next_id
  local parts = { dir }
  for _, w in ipairs(words) do parts[#parts + 1] = w end
  send_frame(conn, "R", id, table.concat(parts, "\0") .. "\0")
  while true do
    local t, fid, p = read_frame(conn)
    if t == nil then
      die("connection closed by the server")
      return FAILED
    end
    if fid == id or fid == 0 then
      if t == "O" then
        io.stdout:write(p)
        io.stdout:flush()
      elseif t == "E" then
        io.stderr:write(p)
        io.stderr:flush()
      elseif t == "X" then
        local code, flags = string.unpack(">i4B", p)
        if flags & 1 ~= 0 then
          io.stderr:write("command_client: timed out on the server\n")
        end
        return code < 0 and 128 - code or code
      elseif t == "F" then
        io.stderr:write("command_client: ", p, "\n")
        return fid == 0 and FAILED or REFUSED
      end
    end
  end
end

-- Words of a line: whitespace separates; '...' keeps everything, "..."
-- and bare words take backslash escapes.
local function split(line)
  local words, cur, i, quote, have = {}, {}, 1, nil, false
  while i <= #line do
    local ch = line:sub(i, i)
    if quote == "'" then
      if ch == "'" then quote = nil else cur[#cur + 1] = ch end
    elseif ch == "\\" and i < #line then
      i = i + 1
      cur[#cur + 1] = line:sub(i, i)
      have = true
    elseif quote == '"' then
      if ch == '"' then quote = nil else cur[#cur + 1] = ch end
    elseif ch == "'" or ch == '"' then
      quote, have = ch, true
    elseif ch:match("%s") then
      if have or #cur > 0 then
        words[#words + 1] = table.concat(cur)
        cur, have = {}, false
      end
    else
      cur[#cur + 1] = ch
    end
    i = i + 1
  end
  if quote then return nil, "unclosed quote" end
  if have or #cur > 0 then words[#words + 1] = table.concat(cur) end
  return words
end

local conn, err = connect()
if conn == nil then return die("%s", err) end

if argv then
  task.setstatus(run(conn, cwd, argv))
  conn:close()
  return
end

-- Interactive.
local status = 0
while true do
  local ok, line = pcall(input, ("%s:%d> "):format(host, port))
  if not ok then io.stdout:write("\n"); break end
  local words, serr = split(line)
  if words == nil then
    io.stderr:write("command_client: ", serr, "\n")
  elseif words[1] == "exit" or words[1] == "quit" then
    break
  elseif #words > 0 then
    status = run(conn, cwd, words)
    if status == FAILED then break end
    if status ~= 0 then io.stderr:write(("[exit %d]\n"):format(status)) end
  end
end
conn:close()
task.setstatus(status)
