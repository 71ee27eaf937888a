-- errors_spec.lua -- Python's exceptions as Lua error objects.
--
-- Checks the shape every layer raises (name, errno, strerror, args,
-- message), tostring() against Python's traceback line, the class
-- hierarchy of PEP 3151 (errno -> subclass) and how a handler catches an
-- error with pcall and isinstance. Expected text is Python 3.11's on Linux.

local errors = require "moonsock.errors"
local socket = require "socket"

describe("error objects", function()
  it("from_errno builds Python's subclass with errno and strerror",
     function()
    local e = errors.from_errno(111)
    assert.equal("ConnectionRefusedError", e.name)
    assert.equal(111, e.errno)
    assert.equal("Connection refused", e.strerror)
    assert.same({111, "Connection refused"}, e.args)
    assert.equal("ConnectionRefusedError: [Errno 111] Connection refused",
                 tostring(e))
  end)

  it("maps errno to the class Python's OSError constructor picks",
     function()
    local want = {
      [11] = "BlockingIOError", [114] = "BlockingIOError",
      [115] = "BlockingIOError", [10] = "ChildProcessError",
      [32] = "BrokenPipeError", [108] = "BrokenPipeError",
      [103] = "ConnectionAbortedError", [111] = "ConnectionRefusedError",
      [104] = "ConnectionResetError", [17] = "FileExistsError",
      [2] = "FileNotFoundError", [4] = "InterruptedError",
      [21] = "IsADirectoryError", [20] = "NotADirectoryError",
      [13] = "PermissionError", [1] = "PermissionError",
      [3] = "ProcessLookupError", [110] = "TimeoutError",
      [9] = "OSError", [22] = "OSError", [98] = "OSError",
    }
    for errno, name in pairs(want) do
      local e = errors.from_errno(errno)
      assert.equal(name, e.name, "errno " .. errno)
      assert.is_true(e:isinstance("OSError"), name)
      assert.equal(("%s: [Errno %d] %s"):format(name, errno, e.strerror),
                   tostring(e))
    end
  end)

  it("gives Python's strerror texts", function()
    assert.equal("Bad file descriptor", errors.from_errno(9).strerror)
    assert.equal("Broken pipe", errors.from_errno(32).strerror)
    assert.equal("Connection reset by peer",
                 errors.from_errno(104).strerror)
    assert.equal("Resource temporarily unavailable",
                 errors.from_errno(11).strerror)
    assert.equal("Address already in use", errors.from_errno(98).strerror)
  end)

  it("a negative errno is a gaierror, as Python numbers EAI codes",
     function()
    local e = errors.from_errno(-2)
    assert.equal("gaierror", e.name)
    assert.equal(-2, e.errno)
    assert.equal("Name or service not known", e.strerror)
    assert.equal("gaierror: [Errno -2] Name or service not known",
                 tostring(e))
    assert.is_true(e:isinstance("OSError"))
  end)

  it("adds a filename the way Python does", function()
    local e = errors.from_errno(2, "/no/such")
    assert.equal("FileNotFoundError: [Errno 2] No such file or directory: "
                 .. "'/no/such'", tostring(e))
    assert.equal("/no/such", e.filename)
  end)

  it("new() makes a non-OS exception without errno", function()
    local e = errors.new("ValueError", "bad value")
    assert.equal("ValueError", e.name)
    assert.is_nil(e.errno)
    assert.equal("ValueError: bad value", tostring(e))
    assert.same({"bad value"}, e.args)
    assert.equal("RuntimeError", tostring(errors.new("RuntimeError")))
  end)

  it("timeout() raises TimeoutError('timed out') with no errno",
     function()
    local ok, e = pcall(errors.timeout)
    assert.is_false(ok)
    assert.equal("TimeoutError", e.name)
    assert.is_nil(e.errno)
    assert.equal("TimeoutError: timed out", tostring(e))
  end)

  it("raise and throw carry the object through pcall and error",
     function()
    local ok, e = pcall(errors.raise, 104)
    assert.is_false(ok)
    assert.equal("ConnectionResetError", e.name)
    ok, e = pcall(errors.throw, "KeyError", "k")
    assert.is_false(ok)
    assert.equal("KeyError", e.name)
    -- Rethrown with error(e) it is the same object.
    local ok2, e2 = pcall(error, e)
    assert.is_false(ok2)
    assert.equal(e, e2)
  end)
end)

describe("the class hierarchy", function()
  local chains = {
    ConnectionRefusedError = {"ConnectionError", "OSError", "Exception",
                              "BaseException"},
    ConnectionResetError = {"ConnectionError", "OSError"},
    ConnectionAbortedError = {"ConnectionError", "OSError"},
    BrokenPipeError = {"ConnectionError", "OSError"},
    TimeoutError = {"OSError", "Exception"},
    BlockingIOError = {"OSError"},
    gaierror = {"OSError"},
    herror = {"OSError"},
    FileNotFoundError = {"OSError"},
    ValueError = {"Exception", "BaseException"},
    TypeError = {"Exception"},
    RuntimeError = {"Exception"},
    EOFError = {"Exception"},
    KeyboardInterrupt = {"BaseException"},
    TimeoutExpired = {"SubprocessError", "Exception"},
  }

  it("walks each class up to its Python ancestors", function()
    for name, ancestors in pairs(chains) do
      local e = errors.new(name, "x")
      assert.is_true(e:isinstance(name), name)
      for _, a in ipairs(ancestors) do
        assert.is_true(e:isinstance(a), name .. " is a " .. a)
        assert.is_true(errors.isinstance(e, errors[a]), name)
      end
    end
  end)

  it("does not go sideways or down", function()
    local e = errors.new("ConnectionResetError", "x")
    assert.is_false(e:isinstance("ConnectionRefusedError"))
    assert.is_false(e:isinstance("TimeoutError"))
    assert.is_false(errors.new("OSError", "x"):isinstance("ConnectionError"))
    assert.is_false(errors.new("ValueError", "x"):isinstance("OSError"))
    assert.is_false(errors.new("KeyboardInterrupt", "x")
                    :isinstance("Exception"))
  end)

  it("isinstance is false for strings and foreign tables", function()
    assert.is_false(errors.isinstance("OSError: x", "OSError"))
    assert.is_false(errors.isinstance({name = "OSError"}, "OSError"))
    assert.is_false(errors.isinstance(nil, "OSError"))
    assert.is_false(errors.new("OSError", "x"):isinstance("NoSuchClass"))
  end)

  it("socket.error, socket.timeout and socket.gaierror are the classes",
     function()
    local e = errors.new("TimeoutError", "timed out")
    assert.is_true(e:isinstance(socket.timeout))
    assert.is_true(e:isinstance(socket.error))
    assert.is_true(errors.from_errno(-2):isinstance(socket.gaierror))
  end)
end)

describe("catching errors from real sockets", function()
  it("pcall + isinstance, as a Python except clause", function()
    local s <close> = socket.socket()
    s:bind{"127.0.0.1", 0}
    local addr = s:getsockname()
    s:close()
    local c <close> = socket.socket()
    local ok, err = pcall(c.connect, c, addr)
    assert.is_false(ok)
    local caught
    if err:isinstance("ConnectionError") then
      caught = "ConnectionError"
    elseif err:isinstance("OSError") then
      caught = "OSError"
    end
    assert.equal("ConnectionError", caught)
  end)

  it("is an object without a position prefix", function()
    local a, b = socket.socketpair()
    a:close()
    local ok, err = pcall(function() return a:recv(1) end)
    assert.is_false(ok)
    -- The error object carries no position, unlike a string error.
    assert.is_table(err)
    assert.equal("OSError: [Errno 9] Bad file descriptor", tostring(err))
    b:close()
  end)
end)
