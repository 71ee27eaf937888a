-- fs_spec.lua -- moonsock.fs (bindings/fs.lua over core/file.c), and
-- socket:sendfile (bindings/socket.lua).
--
-- Real files in a fresh directory under /tmp: open relative to a
-- directory handle, pread/pwrite, fsync, rename with and without
-- noreplace, unlink, stat, listdir, disk_usage, xattrs; the refusals
-- (names with '/', '.', '..', symlinks never followed) raise Python's
-- exceptions; and sendfile moves a file through a socket pair.

local fs = require "moonsock.fs"
local socket = require "socket"
local errors = require "moonsock.errors"

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  return p
end

describe("moonsock.fs", function()
  local path, d

  before_each(function()
    path = tmpdir()
    d = fs.opendir(path, { create = true })
  end)

  after_each(function()
    for _, n in ipairs(fs.listdir(d)) do fs.unlink(n, { dir_fd = d }) end
    d:close()
    os.remove(path)
  end)

  it("writes, reads, syncs and stats a file", function()
    local f <close> = fs.open("a", fs.O_RDWR | fs.O_CREAT | fs.O_EXCL,
                              420, { dir_fd = d })
    assert.equal(5, f:pwrite("hello", 0))
    assert.equal(6, f:pwrite(" world", 5))
    assert.equal("lo wo", f:pread(5, 3))
    assert.equal("", f:pread(5, 100))
    f:fsync()
    f:fdatasync()
    f:writeback(0, 11)
    assert.equal(11, f:fstat().st_size)
    local st = fs.stat("a", { dir_fd = d })
    assert.is_true(st.is_file)
    assert.equal(11, st.st_size)
    f:truncate(2)
    assert.equal("he", f:pread(100, 0))
    assert.same({ "a" }, fs.listdir(d))
    assert.same({ "a" }, fs.listdir(path))
    assert.is_true(fs.open(path .. "/a", fs.O_RDONLY):pread(2, 0) == "he")
  end)

  it("fsync runs on a worker thread: closing the file meanwhile is safe, "
     .. "and a closed file raises EBADF", function()
    local threading = require "threading"
    local f = fs.open("big", fs.O_RDWR | fs.O_CREAT, 420, { dir_fd = d })
    local chunk = ("x"):rep(1 << 20)
    for i = 0, 15 do f:pwrite(chunk, i << 20) end
    -- Two tasks sync the same file at once; a third closes it while
    -- they may still be waiting: the jobs sync their own duplicate.
    local done = 0
    local syncers = {}
    for i = 1, 2 do
      syncers[i] = threading.Thread{target = function()
        f:fsync()
        done = done + 1
      end}
      syncers[i]:start()
    end
    require("time").sleep(0)      -- both start their job and wait on it
    f:close()
    for i = 1, 2 do syncers[i]:join(10) end
    assert.equal(2, done)
    local ok, err = pcall(f.fsync, f)
    assert.is_false(ok)
    assert.equal(9, err.errno)                   -- EBADF, as Python
    assert.equal(16 << 20, fs.stat("big", { dir_fd = d }).st_size)
    -- many in a row: every job is released (ASan would see a leak)
    local g <close> = fs.open("big", fs.O_RDWR, 0, { dir_fd = d })
    for _ = 1, 50 do g:fdatasync() end
  end)

  it("raises Python's exceptions", function()
    local ok, err = pcall(fs.open, "missing", fs.O_RDONLY, 0,
                          { dir_fd = d })
    assert.is_false(ok)
    assert.equal("FileNotFoundError", err.name)
    assert.equal(2, err.errno)
    assert.truthy(tostring(err):find("missing", 1, true))
    fs.open("x", fs.O_WRONLY | fs.O_CREAT, 420, { dir_fd = d }):close()
    ok, err = pcall(fs.open, "x", fs.O_WRONLY | fs.O_CREAT | fs.O_EXCL,
                    420, { dir_fd = d })
    assert.is_false(ok)
    assert.equal("FileExistsError", err.name)
    assert.is_true(errors.isinstance(err, "OSError"))
  end)

  it("refuses names that are not one component", function()
    for _, n in ipairs({ "", ".", "..", "a/b", "../x", "/etc/passwd",
                         ("y"):rep(256) }) do
      local ok, err = pcall(fs.open, n, fs.O_RDONLY, 0, { dir_fd = d })
      assert.is_false(ok, n)
      assert.is_true(err:isinstance("OSError"), n)
      assert.is_false((fs.checkname(n)))
    end
    assert.is_true(fs.checkname("ok name"))
  end)

  it("never follows a symlink at the name", function()
    os.execute(("ln -s /etc/passwd %q/evil"):format(path))
    local ok, err = pcall(fs.open, "evil", fs.O_RDONLY, 0, { dir_fd = d })
    assert.is_false(ok)
    assert.equal(40, err.errno)                         -- ELOOP
    local st = fs.stat("evil", { dir_fd = d })
    assert.is_true(st.is_symlink)
    assert.is_false(st.is_file)
  end)

  it("renames with and without replacing", function()
    for _, n in ipairs({ "a", "b" }) do
      local f <close> = fs.open(n, fs.O_WRONLY | fs.O_CREAT, 420,
                                { dir_fd = d })
      f:pwrite(n, 0)
    end
    local ok, err = pcall(fs.rename, "a", "b", { dir_fd = d,
                                                 noreplace = true })
    assert.is_false(ok)
    assert.equal("FileExistsError", err.name)
    fs.rename("a", "c", { dir_fd = d, noreplace = true })
    fs.replace("c", "b", { dir_fd = d })
    assert.same({ "b" }, fs.listdir(d))
    local f <close> = fs.open("b", fs.O_RDONLY, 0, { dir_fd = d })
    assert.equal("a", f:pread(10, 0))
    d:fsync()
  end)

  it("reports disk usage and keeps xattrs", function()
    local u = fs.disk_usage(d)
    assert.is_true(u.total > 0 and u.free >= 0 and u.free <= u.total)
    local f <close> = fs.open("x", fs.O_RDWR | fs.O_CREAT, 420,
                              { dir_fd = d })
    local ok = pcall(f.setxattr, f, "user.moonsock.test", "v1")
    if ok then assert.equal("v1", f:getxattr("user.moonsock.test")) end
    local v, errno = f:getxattr("user.moonsock.none")
    assert.is_nil(v)
    assert.is_true(errno == fs.ENODATA or errno == fs.ENOTSUP)
  end)

  it("closes once, and refuses use after close", function()
    local f = fs.open("z", fs.O_RDWR | fs.O_CREAT, 420, { dir_fd = d })
    assert.is_true(f:fileno() >= 0)
    f:close()
    f:close()
    assert.equal(-1, f:fileno())
    local ok, err = pcall(f.pread, f, 1, 0)
    assert.is_false(ok)
    assert.equal(9, err.errno)                          -- EBADF
  end)

  it("sends a file through a socket with sendfile", function()
    local f <close> = fs.open("s", fs.O_RDWR | fs.O_CREAT, 420,
                              { dir_fd = d })
    local data = ("0123456789abcdef"):rep(65536)        -- 1 MiB
    f:pwrite(data, 0)
    local a, b = socket.socketpair()
    local got = {}
    local reader = require("threading").Thread { target = function()
      while true do
        local chunk = b:recv(65536)
        if chunk == "" then break end
        got[#got + 1] = chunk
      end
    end }
    reader:start()
    assert.equal(#data - 10, a:sendfile(f, 10))
    assert.equal(5, a:sendfile(f, 0, 5))
    assert.equal(0, a:sendfile(f, #data))
    a:close()
    reader:join()
    b:close()
    assert.equal(data:sub(11) .. data:sub(1, 5), table.concat(got))
    local c, e = socket.socketpair()
    c:settimeout(0)
    assert.has_error(function() c:sendfile(f) end)
    c:close()
    e:close()
  end)
end)
