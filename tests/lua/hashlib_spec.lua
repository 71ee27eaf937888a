-- hashlib_spec.lua -- hashlib, hmac and secrets against Python's outputs.
--
-- Every expected value below was produced by CPython 3's hashlib and hmac
-- modules on the same inputs, so a port line by line gives the same bytes.

local hashlib = require "hashlib"
local hmac = require "hmac"
local secrets = require "moonsock.secrets"

local FOX = "The quick brown fox jumps over the lazy dog"
local ALL = {}
for i = 0, 255 do ALL[#ALL + 1] = string.char(i) end
ALL = table.concat(ALL)

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

describe("hashlib", function()
  local vectors = {
    { "md5", "", "d41d8cd98f00b204e9800998ecf8427e" },
    { "sha1", "", "da39a3ee5e6b4b0d3255bfef95601890afd80709" },
    { "sha256", "",
      "e3b0c44298fc1c149afbf4c8996fb924"
      .. "27ae41e4649b934ca495991b7852b855" },
    { "md5", "abc", "900150983cd24fb0d6963f7d28e17f72" },
    { "sha1", "abc", "a9993e364706816aba3e25717850c26c9cd0d89d" },
    { "sha256", "abc",
      "ba7816bf8f01cfea414140de5dae2223"
      .. "b00361a396177a9cb410ff61f20015ad" },
    { "md5", FOX, "9e107d9d372bb6826bd81d3542a419d6" },
    { "sha1", FOX, "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12" },
    { "sha256", FOX,
      "d7a8fbb307d7809469ca9abcb0082e4f"
      .. "8d5651e46d3cdb762d02d0bf37c9e592" },
    { "md5", ALL, "e2c865db4162bed963bfaa9ef6ac18f0" },
    { "sha1", ALL, "4916d6bdb7f78e6803698cab32d1586ea457dfc8" },
    { "sha256", ALL,
      "40aff2e9d2d8922e47afd4648e696749"
      .. "7158785fbd1da870e7110266bf944880" },
  }

  it("matches Python's digests for md5, sha1 and sha256", function()
    for _, v in ipairs(vectors) do
      local name, data, want = v[1], v[2], v[3]
      assert.equal(want, hashlib[name](data):hexdigest())
      assert.equal(want, hashlib.new(name, data):hexdigest())
      assert.equal(want, hex(hashlib.new(name, data):digest()))
    end
  end)

  it("hashes incrementally like one update", function()
    local h = hashlib.sha256()
    for _ = 1, 1000 do h:update(("a"):rep(1000)) end
    assert.equal(
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
      h:hexdigest())
  end)

  it("keeps accepting updates after digest(), and copy() forks state",
     function()
    local h = hashlib.sha1("a")
    local before = h:hexdigest()
    local c = h:copy()
    c:update("bc")
    assert.equal(before, h:hexdigest())            -- h untouched
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", c:hexdigest())
    h:update("bc")
    assert.equal(c:hexdigest(), h:hexdigest())
  end)

  it("has Python's attributes", function()
    local h = hashlib.new("SHA256")
    assert.equal("sha256", h.name)
    assert.equal(32, h.digest_size)
    assert.equal(64, h.block_size)
    assert.equal(20, hashlib.sha1().digest_size)
    assert.equal(16, hashlib.md5().digest_size)
    assert.equal(128, hashlib.sha512().block_size)
    assert.equal("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee6"
      .. "4b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94f"
      .. "a54ca49f", hashlib.sha512("abc"):hexdigest())
  end)

  it("raises ValueError for an unknown algorithm", function()
    local ok, err = pcall(hashlib.new, "nosuchhash")
    assert.is_false(ok)
    assert.equal("ValueError", err.name)
    assert.truthy(tostring(err):find("unsupported hash type", 1, true))
  end)

  it("raises TypeError for data that is not bytes", function()
    local ok, err = pcall(hashlib.sha256, 42)
    assert.is_false(ok)
    assert.equal("TypeError", err.name)
  end)

  it("takes Python's keyword arguments as a table", function()
    assert.equal("900150983cd24fb0d6963f7d28e17f72",
                 hashlib.new{ name = "md5", data = "abc" }:hexdigest())
  end)
end)

describe("hmac", function()
  it("matches Python's HMAC outputs", function()
    assert.equal(
      "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
      hmac.new("key", FOX, "sha256"):hexdigest())
    assert.equal("de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9",
                 hmac.new("key", FOX, hashlib.sha1):hexdigest())
    assert.equal("80070713463e7749b90c2dc24911e275",
                 hmac.new("key", FOX, "md5"):hexdigest())
    assert.equal(
      "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
      hmac.new("", "", "sha256"):hexdigest())
    -- A key longer than the block size is hashed first, as RFC 2104 says.
    assert.equal(
      "afe233d1e413ce8957c935eb88def4c9df9419b8deb59789007d8afdb77efba5",
      hmac.new(("k"):rep(200), ALL, "sha256"):hexdigest())
  end)

  it("updates incrementally, copies, and has Python's attributes",
     function()
    local m = hmac.new("key", nil, "sha256")
    m:update("The quick brown ")
    local c = m:copy()
    m:update("fox jumps over the lazy dog")
    assert.equal(
      "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
      m:hexdigest())
    assert.are_not.equal(m:hexdigest(), c:hexdigest())
    assert.equal(32, m.digest_size)
    assert.equal(64, m.block_size)
    assert.equal("hmac-sha256", m.name)
    assert.equal(m:digest(), hmac.digest("key", FOX, "sha256"))
  end)

  it("requires digestmod, as Python 3.8 does", function()
    local ok, err = pcall(hmac.new, "key", "msg")
    assert.is_false(ok)
    assert.equal("TypeError", err.name)
  end)

  it("compare_digest tells equal from unequal", function()
    assert.is_true(hmac.compare_digest("abc", "abc"))
    assert.is_false(hmac.compare_digest("abc", "abd"))
    assert.is_false(hmac.compare_digest("abc", "ab"))
    assert.is_true(hmac.compare_digest("", ""))
    local ok, err = pcall(hmac.compare_digest, "a", 1)
    assert.is_false(ok)
    assert.equal("TypeError", err.name)
  end)
end)

describe("secrets", function()
  it("gives fresh random bytes every call", function()
    local a, b = secrets.token_bytes(32), secrets.token_bytes(32)
    assert.equal(32, #a)
    assert.are_not.equal(a, b)
    assert.equal(16, #secrets.token_hex(8))
    assert.truthy(secrets.token_hex(8):match("^%x+$"))
  end)
end)
