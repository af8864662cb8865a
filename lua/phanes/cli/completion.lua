-- completion.lua: shell completion. `phanes completion bash|zsh|fish`
-- prints a script; the script asks the binary for candidates with the
-- hidden command `phanes __complete SHELL WORD... CUR`, so what it offers is
-- always what this phanes knows: the commands and options declared in
-- phanes.cli.options, the profiles and modules on the search path (the user's too:
-- --path in the words, PHANES_PATH, ./, ~/.config/phanes), the inventory's
-- hosts and @groups.
--
--   source <(phanes completion bash)
--   phanes __complete bash apply --only al    -> alpha
--
-- A candidate line ":files" or ":dirs" asks the shell for its own file or
-- directory completion.
local cli = require "phanes.cli"
local M = {}

M.SHELLS = { "bash", "zsh", "fish" }

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- Every command of phanes.cli.options.
function M.commands()
  local out = {}
  for _, name in ipairs(sorted_keys(cli.COMMANDS)) do
    if not cli.COMMANDS[name].hidden then out[#out + 1] = name end
  end
  return out
end

local function option(name) return cli.OPTIONS[name] end

-- The options of `cmd` (nil: before the command), as --name.
function M.options(cmd)
  local out = {}
  for name, o in pairs(cli.OPTIONS) do
    if not o.hidden and (o.cmds == "*" or (cmd and o.cmds[cmd]) or (not cmd and o.cmds.apply)) then
      out[#out + 1] = "--" .. name
    end
  end
  table.sort(out)
  return out
end

local function subcommands(usage, cmd)
  local set = {}
  for words in usage:gmatch("phanes " .. cmd .. " ([%w|%-]+)") do
    for w in words:gmatch "[^|]+" do set[w] = true end
  end
  return sorted_keys(set)
end

local function inventory()
  local ok, inv = pcall(function() return require("phanes.remote.inventory").load() end)
  return ok and inv or nil
end

local function hosts(with_groups)
  local inv = inventory()
  if not inv then return {} end
  local inventory_mod = require "phanes.remote.inventory"
  local out = inventory_mod.names(inv)
  if with_groups then
    for _, g in ipairs(inventory_mod.groups(inv)) do out[#out + 1] = "@" .. g end
  end
  return out
end

local function profiles() return require("phanes.engine.resolve").known_profiles() end
local function modules() return require("phanes.engine.resolve").known_modules() end

local function concat(...)
  local out = {}
  for _, list in ipairs { ... } do
    for _, v in ipairs(list) do out[#out + 1] = v end
  end
  return out
end

-- What an option's value may be.
local VALUES = {
  color = function() return { "auto", "always", "never" } end,
  profile = profiles,
  modules = modules, only = modules,
  config = function() return { ":files" } end, state = function() return { ":files" } end,
  report = function() return { ":files" } end,
  ["vault-password-file"] = function() return { ":files" } end,
  path = function() return { ":dirs" } end,
  key = function() return { ":files" } end, ["known-hosts"] = function() return { ":files" } end,
  binary = function() return { ":files" } end,
  remote = function() return hosts(true) end,
}

-- The words after the command (what each position may be).
local POSITIONAL = {
  apply = function(_, cur)
    if cur:find "/" or cur:match "^%." then return { ":files" } end
    return concat(profiles(), modules())
  end,
  check = function(n) return n == 1 and concat(profiles(), hosts(true)) or (n == 2 and profiles() or {}) end,
  status = function(n) return n == 1 and profiles() or {} end,
  help = function(n) return n == 1 and concat(M.commands(), modules()) or {} end,
  show = function(n) return n == 1 and modules() or {} end,
  completion = function(n) return n == 1 and M.SHELLS or {} end,
  init = function(n) return n == 1 and { ":dirs" } or {} end,
  lua = function() return { ":files" } end,
  config = function(n) return n == 1 and { "show" } or (n == 2 and hosts(true) or {}) end,
  host = function(n, _, pos)
    if n == 1 then return subcommands(require("phanes.remote.host").USAGE, "host") end
    if n == 2 and pos[1] ~= "add" and pos[1] ~= "list" then return hosts(false) end
    return {}
  end,
  vault = function(n)
    return n == 1 and subcommands(require("phanes.cli.vault").USAGE, "vault") or {}
  end,
}

-- Join what bash split at "=": "--color", "=", "al" -> "--color=al".
local function join_eq(words)
  local out, open = {}, false
  for _, w in ipairs(words) do
    local last = out[#out]
    if w == "=" and last and last:match "^%-%-[%w%-]+$" then
      out[#out], open = last .. "=", true
    elseif open then
      out[#out], open = last .. w, false
    else
      out[#out + 1], open = w, false
    end
  end
  return out
end

-- completion.candidates(shell, words) -> list. words: what follows
-- `phanes`, the last one the word being completed ("" for a new one).
function M.candidates(shell, words)
  words = join_eq(words)
  local cur = words[#words] or ""
  local cmd, pos, i = nil, {}, 1
  while i < #words do
    local w = words[i]
    local name = w:match "^%-%-([%w%-]+)$"
    local o = name and option(name)
    if o and o.kind ~= "flag" then i = i + 1 -- its value
    elseif w:sub(1, 1) ~= "-" then
      if cmd then pos[#pos + 1] = w else cmd = w end
    end
    i = i + 1
  end
  local prev = words[#words - 1]
  local prev_opt = prev and prev:match "^%-%-([%w%-]+)$"
  local list, prefix = {}, ""
  local eq_name, eq_value = cur:match "^%-%-([%w%-]+)=(.*)$"
  if eq_name then
    local f = VALUES[eq_name]
    list = f and f() or {}
    if shell ~= "bash" then prefix = "--" .. eq_name .. "=" end
    cur = eq_value
  elseif prev_opt and option(prev_opt) and option(prev_opt).kind ~= "flag" then
    local f = VALUES[prev_opt]
    list = f and f() or {}
  elseif cur:sub(1, 1) == "-" then
    list = M.options(cmd)
  elseif not cmd then
    list = M.commands()
  elseif POSITIONAL[cmd] then
    list = POSITIONAL[cmd](#pos + 1, cur, pos)
  end
  -- a comma list (--only a,b): complete its last item
  local kind = prev_opt and option(prev_opt) and option(prev_opt).kind
  if eq_name or kind == "list" or kind == "target" then
    local head, last = cur:match "^(.*,)([^,]*)$"
    if head then prefix, cur = prefix .. head, last end
  end
  local out = {}
  for _, c in ipairs(list) do
    if c:sub(1, 1) == ":" then out[#out + 1] = c
    elseif c:sub(1, #cur) == cur then out[#out + 1] = prefix .. c end
  end
  return out
end

M.SCRIPTS = {
  bash = [==[
# phanes completion for bash: source <(phanes completion bash)
_phanes() {
  local cur=${COMP_WORDS[COMP_CWORD]} line eq=
  local -a words=("${COMP_WORDS[@]:1:COMP_CWORD}")
  COMPREPLY=()
  [[ $cur == = ]] && eq==
  while IFS= read -r line; do
    case $line in
      :files) COMPREPLY+=($(compgen -f -- "${cur#=}")) ;;
      :dirs) COMPREPLY+=($(compgen -d -- "${cur#=}")) ;;
      *) COMPREPLY+=("$eq$line") ;;
    esac
  done < <("${COMP_WORDS[0]}" __complete bash "${words[@]}" 2>/dev/null)
}
complete -o filenames -F _phanes phanes
]==],
  zsh = [==[
#compdef phanes
# phanes completion for zsh: source <(phanes completion zsh) (after compinit)
_phanes() {
  local -a cands
  local line
  for line in "${(@f)$(${words[1]} __complete zsh "${(@)words[2,CURRENT]}" 2>/dev/null)}"; do
    case $line in
      :files) _files ;;
      :dirs) _files -/ ;;
      '') ;;
      *) cands+=("$line") ;;
    esac
  done
  (( ${#cands} )) && compadd -Q -- "${cands[@]}"
  return 0
}
if [[ ${funcstack[1]} == _phanes ]]; then _phanes "$@"; else compdef _phanes phanes; fi
]==],
  fish = [==[
# phanes completion for fish: phanes completion fish | source
function __phanes_complete
    set -l words (commandline -opc) (commandline -ct)
    set -e words[1]
    for line in (phanes __complete fish $words 2>/dev/null)
        switch $line
            case ':files'
                __fish_complete_path (commandline -ct)
            case ':dirs'
                __fish_complete_directories (commandline -ct)
            case '*'
                echo $line
        end
    end
end
complete -c phanes -f -a '(__phanes_complete)'
]==],
}

-- phanes completion SHELL
function M.main(p)
  local shell = p.args[1]
  if not M.SCRIPTS[shell] then
    io.stderr:write("phanes: completion for which shell? one of: ", table.concat(M.SHELLS, ", "),
      shell and (" (not '" .. shell .. "')") or "", "\nusage: phanes completion bash|zsh|fish\n")
    return cli.EXIT.usage
  end
  io.stdout:write(M.SCRIPTS[shell])
  return cli.EXIT.ok
end

-- phanes __complete SHELL WORD... (hidden): one candidate a line.
function M.complete(args)
  local shell = table.remove(args, 1)
  local ok, list = pcall(M.candidates, shell, args)
  if not ok then return cli.EXIT.ok end -- completion never breaks the shell
  for _, c in ipairs(list) do io.stdout:write(c, "\n") end
  return cli.EXIT.ok
end

return M
