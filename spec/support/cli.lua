-- spec/support/cli.lua: runs the CLI with the stand-ins of
-- spec/support/fallback.lua (only while the real primitives are missing):
--   build/phanes lua spec/support/cli.lua apply ... --path spec/fixtures/runner
require("spec.support.fallback").route()
local code = require("phanes.cli").main({ ... })
io.stdout:flush()
os.exit(code, true)
