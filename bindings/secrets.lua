-- secrets.lua -- Python's secrets module: random tokens for nonces, keys.
--
-- require "moonsock.secrets". Bytes come from libcrypto's CSPRNG
-- (RAND_bytes, via _moonsock.hashlib), never from math.random.

local raw = require "_moonsock.hashlib"
local errors = require "moonsock.errors"

local M = {}

local DEFAULT_ENTROPY = 32

-- token_bytes([n]) -> n random bytes (32 by default).
function M.token_bytes(n)
  local b, err = raw.urandom(n or DEFAULT_ENTROPY)
  if not b then errors.throw("OSError", err, 2) end
  return b
end

-- token_hex([n]) -> 2n hex digits.
function M.token_hex(n)
  return (M.token_bytes(n):gsub(".", function(c)
    return ("%02x"):format(c:byte())
  end))
end

M.compare_digest = raw.compare_digest

return M
