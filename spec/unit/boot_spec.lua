-- The boot chunk: search path, embedded tree, require of phanes modules.
describe("boot", function()
  local loader = require "phanes.loader"
  local embedded = require "phanes.embedded"

  it("embeds the Lua tree, sorted", function()
    local names = embedded.list "lua/phanes/"
    assert.truthy(#names > 0)
    for i = 2, #names do assert.truthy(names[i - 1] < names[i]) end
    assert.is_string(embedded.get "lua/phanes/boot.lua")
    assert.is_nil(embedded.get "lua/phanes/nope.lua")
  end)

  it("prefers a file on the search path over the embedded copy", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/lua/phanes"))
    local f = assert(io.open(dir .. "/lua/phanes/cli.lua", "w"))
    f:write "return 'from disk'\n"
    f:close()
    table.insert(loader.dirs, 1, dir)
    local text, origin = loader.find "lua/phanes/cli.lua"
    table.remove(loader.dirs, 1)
    os.execute("rm -rf " .. dir)
    assert.equal("return 'from disk'\n", text)
    assert.equal(dir .. "/lua/phanes/cli.lua", origin)
  end)

  it("falls back to the embedded tree", function()
    local _, origin = loader.find "lua/phanes/boot.lua"
    assert.truthy(origin == "embedded" or origin:match "boot%.lua$")
    assert.is_nil((loader.find "modules/does-not-exist.lua"))
  end)
end)
