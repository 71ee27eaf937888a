-- command_frames.lua -- the wire format shared by command.lua and
-- command_client.lua (docs/command.md): 9-byte frame headers (type, id,
-- length, big-endian) and the HMAC-SHA256 proof of the handshake.
--
-- One place for both ends, so client and server cannot drift apart. Who
-- may send which frame, and when, stays with each end.

local hmac = require "hmac"

local M = {}

M.PROTO = "moonsock-command-1 "
M.HEADER = 9

local function recv_exact(conn, n)
  local parts, got = {}, 0
  while got < n do
    local data = conn:recv(n - got)
    if data == "" then return nil end
    parts[#parts + 1] = data
    got = got + #data
  end
  return table.concat(parts)
end

-- read(conn[, max]) -> type, id, payload | nil (end of stream) |
-- false, type, length (longer than max; the payload is left unread).
function M.read(conn, max)
  local hdr = recv_exact(conn, M.HEADER)
  if hdr == nil then return nil end
  local t, id, len = string.unpack(">c1I4I4", hdr)
  if max ~= nil and len > max then return false, t, len end
  local payload = len > 0 and recv_exact(conn, len) or ""
  if payload == nil then return nil end
  return t, id, payload
end

-- pack(type, id, payload) -> the frame's bytes
function M.pack(t, id, payload)
  payload = payload or ""
  return string.pack(">c1I4I4", t, id, #payload) .. payload
end

-- mac(key, label, server_nonce, client_nonce) -> the 32-byte proof
function M.mac(key, label, sn, cn)
  return hmac.new(key, M.PROTO .. label .. sn .. cn, "sha256"):digest()
end

return M
