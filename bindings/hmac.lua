-- hmac.lua -- Python's hmac module over libcrypto (_moonsock.hashlib).
--
-- hmac.new(key, msg, digestmod) returns an HMAC object with update,
-- digest, hexdigest, copy, digest_size, block_size and name (see
-- hashlib.c). digestmod is required, as in Python 3.8+: a name
-- ("sha256") or a hashlib constructor (hashlib.sha256). hmac.digest is
-- the one-shot form and hmac.compare_digest compares in constant time.
-- Keyword arguments may come as one table: hmac.new(key, {digestmod =
-- "sha256", msg = "..."}).

local raw = require "_moonsock.hashlib"
local errors = require "moonsock.errors"

local M = {}

-- digestmod (name or constructor) -> the algorithm's name.
local function digest_name(digestmod, level)
  if type(digestmod) == "function" then
    local ok, h = pcall(digestmod)
    if ok and h ~= nil then return h.name end
  elseif type(digestmod) == "string" then
    return digestmod
  elseif type(digestmod) == "table" and type(digestmod.name) == "string"
  then
    return digestmod.name
  end
  errors.throw("TypeError", "Missing required parameter 'digestmod'.",
               level + 1)
end

local function check_bytes(v, what, level)
  if type(v) ~= "string" then
    errors.throw("TypeError", ("%s: expected bytes, got %s"):format(
      what, type(v)), level + 1)
  end
end

-- new(key, msg, digestmod) -> HMAC object.
function M.new(key, msg, digestmod)
  if type(msg) == "table" and digestmod == nil then   -- keyword form
    msg, digestmod = msg.msg, msg.digestmod
  end
  check_bytes(key, "key", 2)
  if msg ~= nil then check_bytes(msg, "msg", 2) end
  local name = digest_name(digestmod, 2)
  local m, err = raw.hmac_new(key, name, msg)
  if not m then
    errors.throw("ValueError", err .. " " .. tostring(name), 2)
  end
  return m
end

-- digest(key, msg, digest) -> the MAC of msg as bytes (one shot).
function M.digest(key, msg, digest)
  check_bytes(key, "key", 2)
  check_bytes(msg, "msg", 2)
  local m, err = raw.hmac_new(key, digest_name(digest, 2), msg)
  if not m then errors.throw("ValueError", err, 2) end
  return m:digest()
end

-- compare_digest(a, b) -> bool, in time that depends only on the lengths.
function M.compare_digest(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then
    errors.throw("TypeError", "unsupported operand types for "
                 .. "compare_digest", 2)
  end
  return raw.compare_digest(a, b)
end

return M
