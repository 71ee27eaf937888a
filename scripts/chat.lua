-- chat.lua -- a multi-user chat server, written as a moonsock handler.
--
--   moonsock scripts/chat.lua                       # 0.0.0.0:8000
--   moonsock --listen 127.0.0.1:9000 scripts/chat.lua --max-line 2048
--
-- One line is one message (LF or CRLF). Each message goes to everyone in
-- the sender's room, the sender included, as "NAME: TEXT"; so the
-- tutorial's Python client, which sends text without a newline and then
-- does one recv(1024), gets its own message back as the answer. A message
-- without a newline counts as complete once the client has sent nothing
-- more for `quiet` seconds (docs/chat.md says why 0.3 s). Commands start
-- with "/" (/help lists them); lines typed on the server's stdin go to
-- every room as from "server", and /kick and /who work there too.
--
-- Written on the socket API only, in the blocking style: each connection
-- is a reader (this handler's task) plus a writer green thread that
-- drains the client's output queue, so a broadcast only appends to
-- queues and never waits for a slow client; one that lets its queue pass
-- `max_queue` bytes is dropped. All mutable state (clients, names,
-- rooms, queues) lives in self.server.state.chat, and every loop calls
-- back through self, so a hot reload reaches live connections at their
-- next step and loses nobody. Limits: see OPTIONS below and docs/chat.md.

local socket = require "socket"
local threading = require "threading"
local time = require "time"
local task = require "moonsock.task"
local errors = require "moonsock.errors"

local Chat = {
  listen = { "0.0.0.0", 8000 },
  -- Idle timeout in seconds. serve.lua reads this field as the default of
  -- moonsock's own --timeout option, so `moonsock --timeout 60` sets it.
  timeout = 900,
  max_line = 4096,         -- bytes in one line, without its newline
  max_queue = 256 * 1024,  -- bytes waiting for one client before a drop
  rate = 10,               -- messages per second per client, sustained
  burst = 20,              -- messages a client may send at once
  quiet = 0.3,             -- seconds of silence that end a partial line
  greet_delay = 1.0,       -- seconds the greeting waits for a first line
  linger = 1.0,            -- seconds spent flushing a closing client
  console = true,          -- read operator commands from stdin
  monitor = false,         -- print room traffic on stdout
}

-- Script options: `moonsock [OPTIONS] scripts/chat.lua [CHAT OPTIONS]`.
-- Each sets the handler field of the same name (dashes for underscores).
local OPTIONS = {
  ["--max-line"] = { key = "max_line", min = 64, integer = true },
  ["--max-queue"] = { key = "max_queue", min = 4096, integer = true },
  ["--rate"] = { key = "rate", min = 0.001 },
  ["--burst"] = { key = "burst", min = 1, integer = true },
  ["--quiet"] = { key = "quiet", min = 0.01 },
  ["--greet-delay"] = { key = "greet_delay", min = 0 },
  ["--linger"] = { key = "linger", min = 0 },
  ["--no-console"] = { key = "console", flag = false },
  ["--monitor"] = { key = "monitor", flag = true },
}

local USAGE = [[
usage: moonsock [MOONSOCK OPTIONS] scripts/chat.lua [CHAT OPTIONS]

chat options (defaults in brackets):
  --max-line BYTES     longest line a client may send [4096]
  --max-queue BYTES    output a slow reader may fall behind [262144]
  --rate N             messages per second per client [10]
  --burst N            messages a client may send at once [20]
  --quiet SECONDS      silence that ends a line sent without newline [0.3]
  --greet-delay S      how long the greeting waits for a first line [1]
  --linger SECONDS     time spent flushing output to a closing client [1]
  --no-console         do not read operator commands from stdin
  --monitor            print room traffic on stdout
moonsock options that matter here: --listen ADDR, --timeout SECONDS
(idle timeout, default 900), --max-connections N.
]]

local NAME_MAX, ROOM_MAX = 16, 24
local LOBBY = "lobby"
local CHUNK = 4096              -- bytes asked of one recv()
local DRAIN_MAX = 256 * 1024    -- input discarded while closing
local BATCH = 64 * 1024         -- bytes handed to one send()
local REPLACEMENT = "\239\191\189"  -- U+FFFD

local INFO, WARN = task.INFO, task.WARN

local function log(level, fmt, ...)
  task.log(level, "chat: " .. fmt:format(...))
end

-- is(err, "TimeoutError"): Python's isinstance for a caught error, which
-- may also be a plain string from a Lua bug.
local function is(err, name)
  return type(err) == "table" and type(err.isinstance) == "function"
         and err:isinstance(name)
end

---------------------------------------------------------------------------
-- text

-- clean(bytes) -> text safe to show inside one line: invalid UTF-8
-- becomes U+FFFD; control characters, Unicode line separators and bidi
-- controls go, since each could make one line look like two or make a
-- message look as if it came from someone else.
local function clean(s)
  if not s:find("[\0-\31\127-\255]") then return s end -- printable ASCII
  local parts, i = {}, 1
  while true do
    local ok, bad = utf8.len(s, i)
    if ok then
      parts[#parts + 1] = s:sub(i)
      break
    end
    parts[#parts + 1] = s:sub(i, bad - 1)
    parts[#parts + 1] = REPLACEMENT
    i = bad + 1
  end
  s = table.concat(parts)
  s = s:gsub("\t", " ")
       :gsub("[\0-\31\127]", "")
       :gsub("\194[\128-\159]", "")              -- C1 controls, NEL
       :gsub("\226\128[\142\143\168-\174]", "")  -- LRM RLM LS PS LRE..RLO
       :gsub("\226\129[\166-\169]", "")          -- LRI RLI FSI PDI
  return s
end
Chat.clean = clean

-- trim(s) without a pattern that backtracks on long runs of spaces.
local function trim(s)
  local a = s:find("%S")
  if a == nil then return "" end
  local b = #s
  while s:find("^%s", b) do b = b - 1 end
  return s:sub(a, b)
end

-- A name or room: ASCII letter first, then letters, digits, _ and -.
-- ASCII only, so that no two names look alike and none holds ":" or a
-- space, which is what makes "NAME: TEXT" unforgeable.
local function valid_name(s, max)
  return #s <= max and s:find("^[%a][%w_%-]*$") ~= nil
end
Chat.valid_name = valid_name

local RESERVED = { server = true, operator = true, admin = true }

---------------------------------------------------------------------------
-- state: everything that must survive a reload

local function chat_state(server)
  local st = server.state.chat
  if st == nil then
    st = { clients = {}, names = {}, rooms = {}, guests = 0, count = 0 }
    server.state.chat = st
  end
  return st
end
Chat.chat_state = chat_state

-- A room is a set of clients plus an array in joining order, so that
-- broadcasts and /who have a stable order.
local function room_of(st, name)
  local room = st.rooms[name]
  if room == nil then
    room = { name = name, members = {}, size = 0 }
    st.rooms[name] = room
  end
  return room
end

local function room_add(st, name, c)
  local room = room_of(st, name)
  room.members[#room.members + 1] = c
  room.size = room.size + 1
  c.room = name
end

local function room_remove(st, c)
  local room = st.rooms[c.room]
  if room == nil then return end
  local m = room.members
  for i = 1, #m do
    if m[i] == c then
      table.remove(m, i)
      room.size = room.size - 1
      break
    end
  end
  if room.size == 0 and room.name ~= LOBBY then st.rooms[room.name] = nil end
end

---------------------------------------------------------------------------
-- output: queues, writers, broadcasts

-- drop(c, why): stop serving c now. Shutting the socket down wakes its
-- reader (recv returns "") and its writer (send fails); finish() then
-- tells the room.
local function drop(c, why)
  if c.gone then return end
  c.gone = true
  c.reason = c.reason or why
  c.queue, c.qfirst, c.qlast = {}, 1, 0
  pcall(c.sock.shutdown, c.sock, socket.SHUT_RDWR)
  c.wake:set()
end

-- deliver(self, c, line): queue one whole line (with its newline) for c.
-- Never waits: the room must not wait for any one reader.
local function deliver(self, c, line)
  if c.gone or c.closing then return end
  local n = c.qlast + 1
  c.queue[n] = line
  c.qlast = n
  c.qbytes = c.qbytes + #line
  -- Over the limit counts only while the writer is stalled on a full
  -- socket: a room's burst that arrives within one pass of the loop, before
  -- the writer has had its turn, is no sign of a slow reader. Four times
  -- the limit is too much either way.
  if c.qbytes > self.max_queue
     and (c.stalled or c.qbytes > 4 * self.max_queue) then
    log(WARN, "%s (%s): output queue over %d bytes; dropping",
        c.name, c.peer, self.max_queue)
    drop(c, "too slow: output queue full")
  elseif not c.wake:is_set() then
    c.wake:set()
  end
end

local function notice(self, c, text)
  deliver(self, c, "*** " .. text .. "\n")
end

-- broadcast(self, room_name, line[, except]): one line to a room.
function Chat:broadcast(room_name, line, except)
  local st = chat_state(self.server)
  local room = st.rooms[room_name]
  if room == nil then return end
  local m = room.members
  for i = 1, #m do
    local c = m[i]
    if c ~= except then deliver(self, c, line) end
  end
  if self.monitor then
    io.stdout:write("[", room_name, "] ", line)
    io.stdout:flush()
  end
end

-- write_some() -> false when the writer is done: wait for output, then
-- send one batch. The writer thread calls it in a loop through self, so
-- a reload changes how the next batch is written.
function Chat:write_some()
  local c = self.client
  c.wake:clear()
  -- Nothing goes out before the greeting (see greet()).
  while not (c.greeted and (c.greeting or c.qfirst <= c.qlast)) do
    if c.gone or (c.closing and c.qfirst > c.qlast) then return false end
    c.wake:wait()
    c.wake:clear()
  end
  -- Take whole lines, up to about BATCH bytes, so lines never interleave.
  local last, size = c.qfirst, 0
  while last <= c.qlast and size < BATCH do
    size = size + #c.queue[last]
    last = last + 1
  end
  local data = table.concat(c.queue, "", c.qfirst, last - 1)
  local counted = #data
  if c.greeting then
    data = c.greeting .. data
    c.greeting = nil
  end
  for i = c.qfirst, last - 1 do c.queue[i] = nil end
  c.qfirst = last
  if c.qfirst > c.qlast then c.queue, c.qfirst, c.qlast = {}, 1, 0 end
  local sock, i = c.sock, 1
  while i <= #data do
    -- send(), not sendall(): the socket's timeout belongs to the reader,
    -- and after a timed-out sendall nobody knows what was sent.
    local ok, n = pcall(sock.send, sock, i == 1 and data or data:sub(i))
    if ok then
      i = i + n
      c.stalled = i <= #data       -- the kernel took only part of it
    elseif c.gone then
      return false
    elseif is(n, "TimeoutError") or is(n, "BlockingIOError") then
      c.stalled = true
    else
      drop(c, "connection lost")
      return false
    end
  end
  c.stalled = false
  c.qbytes = c.qbytes - counted
  return true
end

local function start_writer(self)
  local c = self.client
  c.writer = threading.Thread {
    name = "chat-writer-" .. c.id, daemon = true,
    target = function()
      while self:write_some() do end
      c.writer_done:set()
    end,
  }
  c.writer:start()
end

---------------------------------------------------------------------------
-- joining and leaving

-- greet(): release the client's output, the greeting first. Held until
-- the first line or `greet_delay`, so that a client that sends at once and
-- then reads once (the tutorial's) gets greeting and answer together
-- instead of reading the greeting alone and staying one answer behind.
function Chat:greet()
  local c = self.client
  if c.greeted then return end
  local st = chat_state(self.server)
  local room = st.rooms[c.room]
  local others = room and room.size - (c.left and 0 or 1) or 0
  -- Short, so that it and the first answer fit in one recv(1024).
  c.greeting = ("*** Welcome to moonsock chat, %s! You are in %s with %d "
                .. "other%s. Type /help for commands.\n")
               :format(c.name, c.room, others, others == 1 and "" or "s")
  c.greeted = true
  c.wake:set()
end

local function guest_name(st)
  repeat
    st.guests = st.guests + 1
  until st.names[("guest" .. st.guests)] == nil
  return "guest" .. st.guests
end

-- on_server_stop(server): moonsock is stopping (SIGTERM): tell everyone
-- and end each connection now rather than at the end of the grace period.
-- No leave notices: the room is going away as a whole.
function Chat.on_server_stop(server)
  local st = chat_state(server)
  local inst = setmetatable({ server = server },
                            { __index = server.handler or Chat })
  for c in pairs(st.clients) do
    notice(inst, c, "server shutting down")
    c.reason = "server shutting down"
    c.closing = true
    pcall(c.sock.shutdown, c.sock, socket.SHUT_RD)
  end
end

-- One watcher per server: serve.lua sets server.stopping on SIGTERM but
-- wakes no handler, and a reader may sit in recv() for the idle timeout.
local function watch_stop(server)
  while not server.stopping do time.sleep(0.2) end
  local h = server.handler or Chat
  h.on_server_stop(server)
end

function Chat:setup()
  local st = chat_state(self.server)
  if not st.stop_watch then
    st.stop_watch = true
    threading.Thread { name = "chat-stop-watch", daemon = true,
                       target = watch_stop, args = { self.server } }:start()
  end
  local conn = self.request
  local addr = self.client_address
  local now = time.monotonic()
  st.count = st.count + 1
  local c = {
    id = st.count, sock = conn,
    peer = type(addr) == "table" and (tostring(addr[1]) .. ":"
           .. tostring(addr[2])) or tostring(addr),
    queue = {}, qfirst = 1, qlast = 0, qbytes = 0,
    wake = threading.Event(), writer_done = threading.Event(),
    inbuf = "", since = now, last_in = now,
    tokens = self.burst, tokens_at = now,
    greeted = false, closing = false, gone = false, left = false,
  }
  c.name = guest_name(st)
  st.names[c.name:lower()] = c
  st.clients[c] = true
  self.client = c
  room_add(st, LOBBY, c)
  -- The console needs the server before anyone talks to it.
  local anchor = package.loaded["moonsock.chat.console"]
  if type(anchor) == "table" then anchor.server = self.server end
  start_writer(self)
  if self.greet_delay <= 0 then self:greet() end
  self:broadcast(c.room, ("*** %s joined %s\n"):format(c.name, c.room), c)
  log(INFO, "%s connected from %s", c.name, c.peer)
end

-- leave(c, reason): take c out of names, rooms and the room's view, once.
function Chat:leave(reason)
  local c = self.client
  if c == nil or c.left then return end
  c.left = true
  local st = chat_state(self.server)
  reason = c.reason or reason or "connection closed"
  st.clients[c] = nil
  if st.names[c.name:lower()] == c then st.names[c.name:lower()] = nil end
  local room = c.room
  room_remove(st, c)
  self:broadcast(room, ("*** %s left %s (%s)\n"):format(c.name, room,
                                                        reason))
  log(INFO, "%s (%s) left: %s", c.name, c.peer, reason)
end

-- close_softly(): let the writer flush what is queued (at most `linger`
-- seconds), then, if the client may still be sending, half-close and
-- discard a bounded amount of input, so that our last line is not lost
-- to a reset caused by unread data.
function Chat:close_softly()
  local c = self.client
  self:greet()
  c.closing = true
  c.wake:set()
  if not c.gone then c.writer_done:wait(self.linger) end
  if c.drain and not c.gone then
    local sock = c.sock
    pcall(sock.shutdown, sock, socket.SHUT_WR)
    local deadline, got = time.monotonic() + self.linger, 0
    while got < DRAIN_MAX do
      local left = deadline - time.monotonic()
      if left <= 0 then break end
      sock:settimeout(left)
      local ok, data = pcall(sock.recv, sock, CHUNK)
      if not ok or data == "" then break end
      got = got + #data
    end
  end
  c.gone = true
  c.wake:set()
end

function Chat:finish()
  if self.client == nil then return end
  self:leave()
  self:close_softly()
end

---------------------------------------------------------------------------
-- reading

-- take_token(): wait until the client may send one more message. Waiting
-- here stops reading from this client only; TCP pushes back on it.
function Chat:take_token()
  local c = self.client
  local now = time.monotonic()
  c.tokens = math.min(self.burst, c.tokens + (now - c.tokens_at)
                                             * self.rate)
  c.tokens_at = now
  if c.tokens < 1 then
    time.sleep((1 - c.tokens) / self.rate)
    now = time.monotonic()
    c.tokens = math.min(self.burst, c.tokens + (now - c.tokens_at)
                                               * self.rate)
    c.tokens_at = now
  end
  c.tokens = c.tokens - 1
end

-- refuse(text): tell the client why, then end its connection.
function Chat:refuse(text, reason)
  local c = self.client
  notice(self, c, "error: " .. text)
  c.reason = c.reason or reason
  c.drain = true
  return false
end

-- step() -> false when the connection should end: one recv and whatever
-- it completes. handle() calls it through self, so each step runs the
-- current version of this file.
function Chat:step()
  local c = self.client
  if c.gone or c.closing then return false end
  local sock = self.request
  local now = time.monotonic()
  local idle = self.server.timeout or Chat.timeout
  local deadline = c.last_in + idle
  if c.inbuf ~= "" then
    deadline = math.min(deadline, c.last_in + self.quiet)
  end
  if not c.greeted then
    deadline = math.min(deadline, c.since + self.greet_delay)
  end
  sock:settimeout(math.max(deadline - now, 0.001))
  local ok, data = pcall(sock.recv, sock, CHUNK)
  if c.gone or c.closing then return false end
  now = time.monotonic()
  if not ok then
    if not is(data, "TimeoutError") then error(data, 0) end
    if c.inbuf ~= "" and now >= c.last_in + self.quiet then
      -- A line sent without newline: complete once the client is quiet.
      local line = c.inbuf
      c.inbuf = ""
      return self:on_line(line)
    end
    if not c.greeted and now >= c.since + self.greet_delay then
      self:greet()
    end
    if now >= c.last_in + idle then
      c.reason = ("idle for %g seconds"):format(idle)
      notice(self, c, "closing: " .. c.reason)
      return false
    end
    return true
  end
  if data == "" then
    -- End of stream: a pending partial line still counts.
    if c.inbuf ~= "" then
      local line = c.inbuf
      c.inbuf = ""
      self:on_line(line)
    end
    return false
  end
  c.last_in = now
  local buf = c.inbuf .. data
  local pos = 1
  while true do
    local nl = buf:find("\n", pos, true)
    if nl == nil then break end
    local stop = nl - 1
    if stop >= pos and buf:byte(stop) == 13 then stop = stop - 1 end
    if stop - pos + 1 > self.max_line then
      c.inbuf = ""
      return self:refuse(("line too long (limit %d bytes); closing")
                         :format(self.max_line), "line too long")
    end
    local line = buf:sub(pos, stop)
    pos = nl + 1
    c.inbuf = buf:sub(pos)   -- kept current: on_line may wait
    if not self:on_line(line) then return false end
    if c.gone or c.closing then return false end
    buf = c.inbuf
    pos = 1
  end
  c.inbuf = buf:sub(pos)
  if #c.inbuf > self.max_line then
    c.inbuf = ""
    return self:refuse(("line too long (limit %d bytes); closing")
                       :format(self.max_line), "line too long")
  end
  -- recv() does not yield while input is waiting, so a busy sender would
  -- fill every queue before any writer ran. Give the writers their turn.
  if pos > 1 then time.sleep(0) end
  return true
end

function Chat:handle()
  while self:step() do end
end

---------------------------------------------------------------------------
-- messages and commands

local COMMANDS = {}
local HELP = {
  "/nick NAME        change your name (letters, digits, _ and -; "
    .. "up to " .. NAME_MAX .. ")",
  "/who              list the people in your room",
  "/msg NAME TEXT    send TEXT to NAME only",
  "/me TEXT          send an action: * NAME TEXT",
  "/join ROOM        move to ROOM (created if new)",
  "/rooms            list the rooms and their sizes",
  "/help             this list",
  "/quit [MESSAGE]   leave",
  "Any other line is a message to your room; start it with // to send "
    .. "a line beginning with /.",
}

-- on_line(bytes) -> false when the client asked to leave.
function Chat:on_line(line)
  local c = self.client
  self:take_token()
  if c.gone or c.closing then return false end
  if not c.greeted then self:greet() end
  if line:byte(1) == 47 and line:byte(2) ~= 47 then     -- "/", not "//"
    local cmd, rest = line:match("^/(%S*)%s*(.-)%s*$")
    local f = COMMANDS[(cmd or ""):lower()]
    if f == nil then
      notice(self, c, ("error: unknown command /%s (try /help)")
                      :format(clean(cmd or "")))
      return true
    end
    return f(self, c, rest) ~= false
  end
  if line:byte(1) == 47 then line = line:sub(2) end      -- "//" -> "/"
  local text = trim(clean(line))
  if text ~= "" then
    self:broadcast(c.room, c.name .. ": " .. text .. "\n")
  end
  return true
end

function COMMANDS.help(self, c)
  for _, h in ipairs(HELP) do notice(self, c, h) end
end

function COMMANDS.nick(self, c, rest)
  local st = chat_state(self.server)
  local name = rest
  if not valid_name(name, NAME_MAX) then
    return notice(self, c, ("error: bad name '%s': use 1 to %d letters, "
                            .. "digits, _ or -, starting with a letter")
                           :format(clean(name), NAME_MAX))
  end
  local key = name:lower()
  if RESERVED[key] then
    return notice(self, c, ("error: the name %s is reserved"):format(name))
  end
  local holder = st.names[key]
  if holder ~= nil and holder ~= c then
    return notice(self, c, ("error: the name %s is taken"):format(name))
  end
  if name == c.name then return end
  local old = c.name
  st.names[old:lower()] = nil
  st.names[key] = c
  c.name = name
  self:broadcast(c.room, ("*** %s is now known as %s\n"):format(old, name))
  log(INFO, "%s (%s) is now %s", old, c.peer, name)
end

local function who_line(st, room_name)
  local room = st.rooms[room_name]
  local names = {}
  for i, m in ipairs(room and room.members or {}) do names[i] = m.name end
  return ("in %s (%d): %s"):format(room_name, #names,
                                   table.concat(names, ", "))
end

function COMMANDS.who(self, c)
  notice(self, c, who_line(chat_state(self.server), c.room))
end

function COMMANDS.msg(self, c, rest)
  local st = chat_state(self.server)
  local name, text = rest:match("^(%S+)%s+(.+)$")
  if name == nil then
    return notice(self, c, "error: usage: /msg NAME TEXT")
  end
  local target = st.names[name:lower()]
  if target == nil then
    return notice(self, c, ("error: no one is called %s"):format(
                            clean(name)))
  end
  text = trim(clean(text))
  if text == "" then return end
  deliver(self, target, ("[pm from %s] %s\n"):format(c.name, text))
  if target ~= c then
    deliver(self, c, ("[pm to %s] %s\n"):format(target.name, text))
  end
end

function COMMANDS.me(self, c, rest)
  local text = trim(clean(rest))
  if text == "" then
    return notice(self, c, "error: usage: /me TEXT")
  end
  self:broadcast(c.room, ("* %s %s\n"):format(c.name, text))
end

function COMMANDS.join(self, c, rest)
  local st = chat_state(self.server)
  if not valid_name(rest, ROOM_MAX) then
    return notice(self, c, ("error: bad room name '%s': use 1 to %d "
                            .. "letters, digits, _ or -, starting with "
                            .. "a letter"):format(clean(rest), ROOM_MAX))
  end
  local name = rest:lower()
  if name == c.room then
    return notice(self, c, ("error: you are already in %s"):format(name))
  end
  local old = c.room
  room_remove(st, c)
  self:broadcast(old, ("*** %s left %s (joined %s)\n"):format(c.name, old,
                                                             name))
  room_add(st, name, c)
  self:broadcast(name, ("*** %s joined %s\n"):format(c.name, name))
end

function COMMANDS.rooms(self, c)
  local st = chat_state(self.server)
  local list = {}
  for name, room in pairs(st.rooms) do
    list[#list + 1] = ("%s (%d)"):format(name, room.size)
  end
  table.sort(list)
  notice(self, c, "rooms: " .. table.concat(list, ", "))
end

function COMMANDS.quit(self, c, rest)
  local text = trim(clean(rest))
  c.reason = text ~= "" and ("quit: " .. text) or "quit"
  notice(self, c, "bye")
  return false
end

---------------------------------------------------------------------------
-- operator console

local function say(fmt, ...)
  io.stdout:write(fmt:format(...), "\n")
  io.stdout:flush()
end

-- console_line(server, line): one line typed on the server's stdin.
-- server is nil until the first client has connected.
function Chat.console_line(server, line)
  line = trim(line)
  if line == "" then return end
  local h = server and server.handler or Chat
  local st = server and chat_state(server)
  local cmd, rest = line:match("^/(%S*)%s*(.-)$")
  if cmd == "who" then
    if st == nil or next(st.clients) == nil then
      return say("*** nobody is connected")
    end
    local list = {}
    for c in pairs(st.clients) do
      list[#list + 1] = ("%-16s %-12s %s queue=%d"):format(
        c.name, c.room, c.peer, c.qbytes)
    end
    table.sort(list)
    say("*** %d connected:\n%s", #list, table.concat(list, "\n"))
  elseif cmd == "kick" then
    local name, why = rest:match("^(%S+)%s*(.-)$")
    local c = st and name and st.names[name:lower()]
    if c == nil then return say("*** no one is called %s", name or "") end
    why = trim(clean(why or ""))
    c.reason = "kicked by the operator" .. (why ~= "" and (": " .. why) or "")
    local inst = setmetatable({ server = server }, { __index = h })
    notice(inst, c, "you have been " .. c.reason)
    -- Stop the reader; finish() then flushes the notice and closes.
    c.closing = true
    pcall(c.sock.shutdown, c.sock, socket.SHUT_RD)
    say("*** kicked %s", c.name)
  elseif cmd == "help" then
    say("*** console: TEXT (to every room), /who, /kick NAME [REASON], "
        .. "/help")
  elseif cmd ~= nil and line:sub(1, 2) ~= "//" then
    say("*** unknown console command /%s (try /help)", cmd)
  else
    if line:sub(1, 2) == "//" then line = line:sub(2) end
    if st == nil or next(st.clients) == nil then
      return say("*** nobody is connected")
    end
    local inst = setmetatable({ server = server }, { __index = h })
    local text = clean(line)
    for name in pairs(st.rooms) do
      inst:broadcast(name, "server: " .. text .. "\n")
    end
  end
end

-- The console task reads stdin with input(), which suspends only this
-- task. It starts once per process: a reload runs this file again, so the
-- flag lives in package.loaded, the one table that outlives a version of
-- this file without being a global. Each line goes through the server's
-- current handler table, so a reload also reaches the console.
local function console_loop(anchor)
  while true do
    local ok, line = pcall(input)  -- luacheck: ignore (builtin)
    if not ok then
      -- No console, and no harm: stdin is /dev/null, closed or broken.
      if not is(line, "EOFError") then
        log(INFO, "console off: stdin: %s", tostring(line))
      end
      return
    end
    local server = anchor.server
    local h = server and server.handler or Chat
    local fok, err = pcall(h.console_line, server, line)
    if not fok then log(WARN, "console: %s", tostring(err)) end
  end
end

---------------------------------------------------------------------------
-- startup

-- parse_args(list) -> nil | "help": set handler fields from options.
function Chat.parse_args(list)
  local i = 1
  while i <= #list do
    local a = list[i]
    local opt = OPTIONS[a]
    if a == "--help" or a == "-h" then return "help" end
    if opt == nil then
      errors.exit(2, ("chat.lua: unknown option '%s' (try --help)")
                     :format(a))
    end
    if opt.flag ~= nil then
      Chat[opt.key] = opt.flag
    else
      local v = tonumber(list[i + 1])
      if v == nil or v < opt.min or (opt.integer and v ~= math.floor(v))
      then
        errors.exit(2, ("chat.lua: %s: expected %s >= %s, got '%s'"):format(
          a, opt.integer and "an integer" or "a number", opt.min,
          tostring(list[i + 1])))
      end
      Chat[opt.key] = opt.integer and math.tointeger(v) or v
      i = i + 1
    end
    i = i + 1
  end
end

-- Options come from `arg` only when this file is the program moonsock
-- runs (not when a spec requires it); `arg` rather than `...` so that a
-- reload, however it calls this chunk, sees the same options.
local function is_main()
  if type(arg) ~= "table" or type(arg[0]) ~= "string" then return false end
  local src = debug.getinfo(1, "S").source
  local path = arg[0]:gsub("^%./", "")
  return src == "@" .. arg[0] or src:sub(-#path - 1) == "/" .. path
         or src == "@" .. path
end

if is_main() then
  if Chat.parse_args(arg) == "help" then
    io.stdout:write(USAGE)
    return
  end
  -- A closed stdin (EBADF) is no console: fd 0 would soon be reused by a
  -- socket of the server, which the console must not read from.
  local _, _, errno = io.stdin:seek("cur")
  if Chat.console and errno ~= 9
     and package.loaded["moonsock.chat.console"] == nil then
    local anchor = {}
    package.loaded["moonsock.chat.console"] = anchor
    threading.Thread { name = "chat-console", daemon = true,
                       target = console_loop, args = { anchor } }:start()
  end
end

return Chat
