-- hashlib.lua -- Python's hashlib over libcrypto (_moonsock.hashlib).
--
-- hashlib.sha256(data), hashlib.sha1, hashlib.md5, ..., hashlib.new(name,
-- data) return hash objects with Python's methods (update, digest,
-- hexdigest, copy) and attributes (digest_size, block_size, name); those
-- live in hashlib.c. This half adds Python's names and turns an unknown
-- algorithm into ValueError. Python's keyword form works too:
-- hashlib.new{name = "sha256", data = "abc"}. Extendable-output digests
-- (shake_*) are left out: their digest() needs a length.

local raw = require "_moonsock.hashlib"
local errors = require "moonsock.errors"

local M = {}

local function check_data(data, level)
  if data ~= nil and type(data) ~= "string" then
    errors.throw("TypeError", ("object supporting the buffer API required"
      .. " (got %s)"):format(type(data)), level + 1)
  end
end

-- new(name [, data]) -> hash object. Raises ValueError for an algorithm
-- libcrypto does not offer.
function M.new(name, data)
  if type(name) == "table" then          -- keyword arguments
    name, data = name.name, name.data or name.string
  end
  if type(name) ~= "string" then
    errors.throw("TypeError", "new() argument 'name' must be str", 2)
  end
  check_data(data, 2)
  local h, msg = raw.new(name, data)
  if not h then
    errors.throw("ValueError", msg .. " " .. name, 2)
  end
  return h
end

-- Python's guaranteed constructors, each hashlib.<name>(data).
M.algorithms_guaranteed = {
  "md5", "sha1", "sha224", "sha256", "sha384", "sha512",
  "sha3_224", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s",
}
M.algorithms_available = {}
for _, name in ipairs(M.algorithms_guaranteed) do
  if raw.supported(name) then
    M[name] = function(data)
      if type(data) == "table" then data = data.data or data.string end
      check_data(data, 2)
      return (raw.new(name, data))
    end
    M.algorithms_available[#M.algorithms_available + 1] = name
  end
end

return M
