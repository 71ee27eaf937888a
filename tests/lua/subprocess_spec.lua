-- subprocess_spec.lua -- Python's subprocess module inside the runtime:
-- run() and its options, CompletedProcess, TimeoutExpired and
-- CalledProcessError, Popen pipes that suspend only the calling task,
-- communicate(), signals, process groups, reaping, fds and env.

local subprocess = require "subprocess"
local task = require "moonsock.task"
local time = require "time"

local PIPE = subprocess.PIPE

local function count_children()
  -- The loop reaps through SIGCHLD; give it a few passes.
  for _ = 1, 100 do
    if subprocess._count() == 0 then return 0 end
    task.sleep(0.01)
  end
  return subprocess._count()
end

describe("subprocess.run", function()
  it("returns a CompletedProcess with Python's fields", function()
    local r = subprocess.run({ "sh", "-c", "echo out; echo err >&2; exit 3" },
                             { capture_output = true })
    assert.equal(3, r.returncode)
    assert.equal("out\n", r.stdout)
    assert.equal("err\n", r.stderr)
    assert.same({ "sh", "-c", "echo out; echo err >&2; exit 3" }, r.args)
    assert.truthy(tostring(r):find("returncode=3, stdout=b'out\\n'", 1,
                                   true))
  end)

  it("leaves stdout and stderr nil unless captured", function()
    local r = subprocess.run({ "true" })
    assert.equal(0, r.returncode)
    assert.is_nil(r.stdout)
    assert.is_nil(r.stderr)
  end)

  it("feeds input and collects large output without deadlock", function()
    local input = ("0123456789abcdef"):rep(256 * 1024)     -- 4 MiB
    local r = subprocess.run({ "cat" }, { input = input,
                                          capture_output = true })
    assert.equal(#input, #r.stdout)
    assert.is_true(r.stdout == input)
  end)

  it("passes bytes of every value through exactly", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all):rep(64)
    local r = subprocess.run({ "cat" }, { input = all, capture_output = true })
    assert.is_true(r.stdout == all)
  end)

  it("raises CalledProcessError with check", function()
    local ok, err = pcall(subprocess.run, { "sh", "-c", "echo x; exit 2" },
                          { check = true, capture_output = true })
    assert.is_false(ok)
    assert.equal("CalledProcessError", err.name)
    assert.is_true(err:isinstance("SubprocessError"))
    assert.equal(2, err.returncode)
    assert.equal("x\n", err.stdout)
    assert.equal("x\n", err.output)
    assert.equal("CalledProcessError: Command '['sh', '-c', 'echo x; exit 2']"
                 .. "' returned non-zero exit status 2.", tostring(err))
  end)

  it("raises TimeoutExpired in time and kills the process group",
     function()
    local t0 = time.monotonic()
    local ok, err = pcall(subprocess.run,
      { "sh", "-c", "echo started; sleep 1000 & wait" },
      { timeout = 0.3, capture_output = true })
    local took = time.monotonic() - t0
    assert.is_false(ok)
    assert.equal("TimeoutExpired", err.name)
    assert.equal(0.3, err.timeout)
    assert.equal("started\n", err.stdout)
    assert.is_true(took >= 0.29 and took < 2.5, "took " .. took)
    assert.equal(0, count_children())
  end)

  it("raises FileNotFoundError for a missing program or cwd", function()
    local ok, err = pcall(subprocess.run, { "no-such-program-xyz" })
    assert.is_false(ok)
    assert.equal("FileNotFoundError", err.name)
    assert.equal("no-such-program-xyz", err.filename)
    ok, err = pcall(subprocess.run, { "true" }, { cwd = "/no/such/dir" })
    assert.is_false(ok)
    assert.equal("FileNotFoundError", err.name)
    assert.equal("/no/such/dir", err.filename)
  end)

  it("uses no shell unless asked", function()
    local r = subprocess.run({ "echo", "$(id)", ";", "`x`", "|", "a\nb" },
                             { capture_output = true })
    assert.equal("$(id) ; `x` | a\nb\n", r.stdout)
    r = subprocess.run("echo $((6 * 7))", { shell = true,
                                            capture_output = true })
    assert.equal("42\n", r.stdout)
  end)

  it("honours cwd and env", function()
    local r = subprocess.run({ "sh", "-c", "pwd; env | sort" },
      { cwd = "/", env = { ONLY = "this", PATH = "/usr/bin:/bin" },
        capture_output = true })
    assert.equal(0, r.returncode)
    assert.equal("/\n", r.stdout:match("^[^\n]*\n"))
    assert.truthy(r.stdout:find("ONLY=this\n", 1, true))
    assert.is_nil(r.stdout:find("HOME=", 1, true))
  end)

  it("gives the child only fds 0, 1 and 2", function()
    -- Open a descriptor without close-on-exec, then look at the child's
    -- fd table from outside while it sleeps.
    local leak = io.open("/dev/null")
    local p = subprocess.Popen({ "sleep", "5" }, { stdout = PIPE })
    -- sleep itself may hold a locale file open for a moment at start.
    local fds
    for _ = 1, 40 do
      task.sleep(0.05)
      local f = io.popen("ls /proc/" .. p.pid .. "/fd | sort | tr '\\n' ' '")
      fds = f:read("a")
      f:close()
      if fds == "0 1 2 " then break end
    end
    leak:close()
    p:kill()
    p:communicate()
    assert.equal("0 1 2 ", fds)
  end)

  it("rejects bad arguments the way Python does", function()
    local ok, err = pcall(subprocess.run, { "echo", "a\0b" })
    assert.is_false(ok)
    assert.equal("ValueError", err.name)
    ok, err = pcall(subprocess.run, { "true" }, { env = { ["A=B"] = "1" } })
    assert.is_false(ok)
    assert.equal("ValueError", err.name)
    ok, err = pcall(subprocess.run, { "true" },
                    { input = "x", stdin = subprocess.DEVNULL })
    assert.is_false(ok)
    assert.equal("ValueError", err.name)
  end)

  it("supports DEVNULL and STDOUT", function()
    local r = subprocess.run({ "sh", "-c", "cat; echo a; echo b >&2" },
      { stdin = subprocess.DEVNULL, stdout = PIPE,
        stderr = subprocess.STDOUT })
    assert.equal("a\nb\n", r.stdout)
    assert.is_nil(r.stderr)
  end)
end)

describe("subprocess.Popen", function()
  it("has pid, args, and pipes that read and write", function()
    local p = subprocess.Popen({ "sh", "-c", "while read l; do echo \"<$l>\";"
                                 .. " done" }, { stdin = PIPE, stdout = PIPE })
    assert.is_true(p.pid > 0)
    assert.is_nil(p:poll())
    p.stdin:write("one\n")
    assert.equal("<one>\n", p.stdout:readline())
    p.stdin:write("two\nthree\n")
    assert.equal("<two>\n", p.stdout:readline())
    assert.equal("<three>\n", p.stdout:readline())
    p.stdin:close()
    assert.equal("", p.stdout:read())
    assert.equal(0, p:wait())
    assert.equal(0, p:poll())
    assert.equal(0, p.returncode)
  end)

  it("wait(timeout) raises TimeoutExpired, then kill gives -9", function()
    local p = subprocess.Popen({ "sleep", "10" })
    local ok, err = pcall(p.wait, p, 0.1)
    assert.is_false(ok)
    assert.equal("TimeoutExpired", err.name)
    p:kill()
    assert.equal(-9, p:wait())
    p = subprocess.Popen({ "sleep", "10" })
    p:terminate()
    assert.equal(-15, p:wait())
    p:kill()                          -- reaped already: no error
  end)

  it("communicate can time out and be called again", function()
    local p = subprocess.Popen({ "sh", "-c", "echo a; sleep 0.4; echo b" },
                               { stdout = PIPE })
    local ok, err = pcall(p.communicate, p, nil, 0.1)
    assert.is_false(ok)
    assert.equal("TimeoutExpired", err.name)
    assert.equal("a\n", err.stdout)
    local out = p:communicate()
    assert.equal("a\nb\n", out)
    assert.equal(0, p.returncode)
  end)

  it("runs each child in its own process group", function()
    local p = subprocess.Popen({ "sh", "-c", "ps -o pgid= -p $$" },
                               { stdout = PIPE })
    local out = p:communicate()
    assert.equal(tostring(p.pid), out:match("%d+"))
  end)

  it("suspends only the calling task", function()
    local ticks = 0
    local stop = false
    task.spawn(function()
      while not stop do
        ticks = ticks + 1
        task.sleep(0.01)
      end
    end)
    local p = subprocess.Popen({ "sh", "-c", "sleep 0.3; echo done" },
                               { stdout = PIPE })
    assert.equal("done\n", p.stdout:read())
    p:wait()
    stop = true
    assert.is_true(ticks >= 10, "ticks " .. ticks)
  end)

  it("lets several tasks wait on one process", function()
    local p = subprocess.Popen({ "sleep", "0.1" })
    local got = {}
    for i = 1, 3 do
      task.spawn(function() got[i] = p:wait() end)
    end
    assert.equal(0, p:wait())
    task.sleep(0.05)
    assert.same({ 0, 0, 0 }, got)
  end)

  it("closes like Python's with-statement", function()
    local pid
    do
      local p <close> = subprocess.Popen({ "sh", "-c", "exit 4" },
                                         { stdout = PIPE })
      pid = p.pid
    end
    assert.is_true(pid > 0)
    assert.equal(0, count_children())
  end)

  it("reaps every child: no zombies after many runs", function()
    for i = 1, 40 do
      subprocess.Popen({ "sh", "-c", "exit " .. (i % 5) })
    end
    collectgarbage()
    assert.equal(0, count_children())
    local f = io.popen("ps -o stat= --ppid " .. tostring(
      io.open("/proc/self/stat"):read("l"):match("^%d+")))
    local stats = f:read("a")
    f:close()
    assert.is_nil(stats:find("Z"))
  end)
end)
