-- remote/script.lua: the shell scripts of a remote run and what they say
-- back: the probe (`phanes --remote X host test`), the login user's
-- prologue and its probe line, the script root runs, and the remote
-- phanes' arguments as shell words of that script. remote/run.lua drives
-- them over one exec channel.
--
--   local script = require "phanes.remote.script"
--   local sh = script.prologue { sha =, arch =, root = script.root_script { ... }, nonce = }
local util = require "phanes.remote.util"
local M = {}

-- Where root works on the target: each run in its own directory made by
-- mktemp -d (0700) under this root-owned one, removed when the run ends.
M.ROOT_DIR = "/var/lib/phanes"

-- The probe, as the login user: arch, uid, sudo, cached binary, OS. It
-- also clears run directories that older versions left in the cache.
-- lean: sudo is only looked for (sudo=present), not tried: a run tries
-- `sudo -n` first and asks for the password when sudo wants one.
function M.probe_script(sha, lean)
  return table.concat({
    "umask 077",
    'C="$HOME/.cache/phanes"',
    '[ -d "$C" ] || { mkdir -p "$C" && chmod 700 "$C"; } || exit 90',
    'echo "cache=$C"',
    'echo "arch=$(uname -m)"',
    'U=$(id -u); echo "uid=$U"',
    'if [ "$U" = 0 ]; then echo sudo=root; elif ! command -v sudo >/dev/null 2>&1; then echo sudo=missing;'
      .. (lean and " else echo sudo=present; fi" or ' elif sudo -n true 2>/dev/null; then echo sudo=nopasswd; else echo sudo=password; fi'),
    'B="$C/phanes-' .. sha .. '"',
    -- a hint only (the login user can change that file): root hashes its
    -- own copy before it runs it (root_script)
    'if [ -f "$B" ] && [ -x "$B" ]; then echo "cached=' .. sha .. '"; fi',
    '[ -r /etc/os-release ] && . /etc/os-release 2>/dev/null && echo "os=$PRETTY_NAME"',
    require("phanes.remote.binary").PROBE,
    'set -- "$C"/run.*; [ -e "$1" ] && find "$C" -maxdepth 1 -name "run.*" -exec rm -rf {} + 2>/dev/null',
    "exit 0",
  }, "\n")
end

function M.parse_probe(text)
  local p = {}
  for k, v in text:gmatch "([%w_]+)=([^\n]*)" do p[k] = v end
  return p
end

-- The shell script root runs (through sudo, or as the login shell of
-- root): it makes a private run directory, unpacks the run's files
-- (config, the user's own files, the overrides) from stdin into it, runs
-- phanes there, hands the report back on stdout between two marker lines,
-- and removes the directory however it ends.
-- The binary root runs is root's own copy, $V/bin/phanes-SHA, in a
-- directory only root can write: made once from the login user's cached
-- binary, which root copies, checks against the sha256 and then keeps. A
-- no-op run thereby reads no 6 MB and hashes nothing; what the login user
-- does to its own cache afterwards does not matter to root.
--   r = { sha =, size = bytes, bin = cached path, payload = bool, words = "args as shell words", nonce = }
-- Before phanes starts, failures say PHANES-ERR (on stderr) or exit 93 (no
-- cached binary) / 94 (it does not match the sha256): upload and retry.
function M.root_script(r)
  local q = util.shquote
  return table.concat({
    "umask 077",
    -- the cached binary: named by the caller, or the prologue's argument
    r.bin and ("B=" .. q(r.bin)) or 'B="$1"',
    "V=" .. q(M.ROOT_DIR),
    '[ -d "$V" ] || mkdir -p -m 755 "$V" 2>/dev/null',
    -- one stat for both: the work directory, then root's binaries
    'X=$(stat -c %u:%A "$V" "$V/bin" 2>/dev/null)',
    'case $X in 0:d????-??-?*) ;; *) echo "PHANES-ERR $V must be a directory owned by'
      .. ' root that only root can write, not: $(stat -c \'%U %A\' "$V" 2>&1)" >&2; exit 91;; esac',
    -- anything else where root keeps its binaries is not root's: gone
    'case $X in *"\n0:drwx------") ;; *) rm -rf "$V/bin"; mkdir -m 700 "$V/bin" || exit 91;; esac',
    'W="$V/bin/phanes-' .. r.sha .. '"',
    -- run directories a killed run left: gone after a day (find only when there are any)
    'set -- "$V"/run.*; [ -e "$1" ] && find "$V" -maxdepth 1 -type d -name "run.*" -mmin +1440 -exec rm -rf {} + 2>/dev/null',
    'D=$(mktemp -d "$V/run.XXXXXX") || { echo "PHANES-ERR cannot make a run directory in $V" >&2; exit 91; }',
    "trap 'cd /; rm -rf \"$D\"' EXIT",
    "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 141' PIPE; trap 'exit 143' TERM",
    'if [ ! -f "$W" ] || [ -L "$W" ]; then',
    -- at most the binary's size (whatever B has become), in 1 MB reads
    '  [ -f "$B" ] && [ ! -L "$B" ] && dd if="$B" of="$D/phanes" bs=1M count=' .. math.tointeger(r.size)
      .. ' iflag=count_bytes status=none 2>/dev/null || exit 93',
    -- openssl's sha256 uses the CPU's SHA instructions: half the time of sha256sum's
    '  if command -v openssl >/dev/null; then H=$(openssl dgst -sha256 -r <"$D/phanes"); else H=$(sha256sum <"$D/phanes"); fi',
    '  [ "${H%% *}" = ' .. r.sha .. " ] || exit 94",
    '  chmod 700 "$D/phanes" && mv -f "$D/phanes" "$W" || { echo "PHANES-ERR cannot keep the phanes binary in $V/bin (disk full?)" >&2; exit 91; }',
    -- the three newest versions stay
    [[  ls -t "$V"/bin/phanes-* | tail -n +4 | xargs -r rm -f]],
    "fi",
    r.payload and 'tar -x -o -C "$D" -f - || { echo "PHANES-ERR cannot unpack the run\'s files in $D" >&2; exit 92; }' or ":",
    'cd "$D" || exit 91',
    -- the pid is the process a Ctrl-C signals (phanes itself, after exec)
    [[sh -c 'echo "PHANES-PID $$ $1"; shift; exec "$@"' sh "$D" "$W" ]] .. r.words .. " </dev/null",
    "c=$?",
    '[ -f report.json ] && printf "\\n%s\\n" "PHANES-REPORT ' .. r.nonce .. '" && cat report.json && printf "\\n%s\\n" "PHANES-REPORT-END ' .. r.nonce .. '"',
    "exit $c",
  }, "\n")
end

-- The login user's side of the one exchange (run.root_script follows it):
-- one framed probe line on stdout, old run directories cleared from the
-- cache, the arch checked, the binary taken from stdin when this run
-- brings it (gz bytes of gzip, ahead of the rest of stdin: head -c reads no
-- more than that), then root_script as root with the cached path as $1.
-- A no-op with the binary cached starts no process of its own before sudo:
-- uid, arch and the package managers come from shell built-ins (bash's
-- HOSTTYPE, /proc/self/status, command -v; uname and id when those are
-- missing), and the C library is asked (getconf) only when the binary is
-- not cached yet (it was checked before it was stored).
--   p = { sha =, arch = expected, root = root_script, nonce =, password = bool, gz = bytes | nil }
-- Exit codes before root: 90 no cache directory, 95 no sudo, 96 another
-- arch, 97 the binary could not be stored.
local function glibc_check(min)
  local maj, minor = min:match "^(%d+)%.(%d+)"
  return table.concat({
    'case "$L" in *musl*) exit 98;; "") ;; *)',
    '  v=${L##* }; a=${v%%.*}; b=${v#"$a"}; b=${b#.}; b=${b%%[!0-9]*}',
    '  case "$a:$b" in *[!0-9:]*|:*|*:) ;; *) [ "$a" -gt ' .. maj .. ' ] || { [ "$a" -eq ' .. maj
      .. ' ] && [ "$b" -ge ' .. minor .. ' ]; } || exit 98;; esac;;',
    "esac",
  }, "\n")
end

function M.prologue(p)
  local q = util.shquote
  local sudo = p.password and "exec sudo -k -S -p '' -- " or "exec sudo -n -- "
  return table.concat({
    "umask 077",
    '[ -r /etc/os-release ] && . /etc/os-release 2>/dev/null',
    'C="$HOME/.cache/phanes"',
    '[ -d "$C" ] || { mkdir -p "$C" && chmod 700 "$C"; } || { echo "PHANES-ERR cannot make the cache directory $C" >&2; exit 90; }',
    'B="$C/phanes-' .. p.sha .. '"',
    -- the effective uid (id -u), read by the shell itself
    'U=; [ -r /proc/self/status ] && while read -r k r e x; do [ "$k" = Uid: ] && U=$e && break; done </proc/self/status',
    'case $U in ""|*[!0-9]*) U=$(id -u);; esac',
    -- bash's own architecture (what uname -m says, also under emulation)
    'case ${HOSTTYPE-} in x86_64|aarch64) A=$HOSTTYPE;; *) A=$(uname -m);; esac',
    'if [ "$U" = 0 ]; then S=root; elif command -v sudo >/dev/null 2>&1; then S=present; else S=missing; fi',
    -- a hint only (the login user can change that file): root hashes its own copy
    'K=no; [ -f "$B" ] && [ -x "$B" ] && K=yes',
    'L=; [ "$K" = yes ] || L=$(getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n 1)',
    'P=; for c in apt-get dpkg dnf yum apk zypper pacman; do command -v $c >/dev/null 2>&1 && P="$P$c,"; done',
    'echo "PHANES-PROBE ' .. p.nonce .. ' arch=$A uid=$U sudo=$S cached=$K libc=$L pkg=$P os=$PRETTY_NAME"',
    'set -- "$C"/run.*; [ -e "$1" ] && find "$C" -maxdepth 1 -name "run.*" -exec rm -rf {} + 2>/dev/null',
    '[ "$A" = ' .. q(p.arch) .. " ] || exit 96",
    -- what binary.check_target refuses (glibc < 2.34, musl, no apt for an
    -- apply): the controller says why from the probe line
    p.check and glibc_check(p.min_glibc) or ":",
    p.apply and 'case "$P" in *apt-get,*dpkg,*) ;; *) exit 98;; esac' or ":",
    '[ "$S" = missing ] && exit 95',
    p.gz and table.concat({
      'T="$B.tmp$$"',
      "head -c " .. math.tointeger(p.gz) .. ' | gunzip > "$T" && chmod 700 "$T" && mv -f "$T" "$B" || { rm -f "$T";'
        .. ' echo "PHANES-ERR cannot store the phanes binary in $C (disk full?)" >&2; exit 97; }',
      -- the three newest versions stay
      [[ls -t "$C"/phanes-* 2>/dev/null | grep -v '\.tmp' | tail -n +4 | xargs rm -f]],
    }, "\n") or ":",
    "R=" .. q(p.root),
    'if [ "$S" = root ]; then exec sh -c "$R" sh "$B"; fi',
    sudo .. 'sh -c "$R" sh "$B"',
  }, "\n")
end

-- The probe line: libc is the C library's own words (spaces and all), up
-- to " pkg="; os is the rest of the line.
function M.parse_probe_line(line, tag)
  local rest = line:match("^PHANES%-PROBE " .. tag .. " (.*)$")
  if not rest then return nil end
  local p = {}
  for _, k in ipairs { "arch", "uid", "sudo", "cached", "pkg" } do p[k] = rest:match(k .. "=(%S*)") end
  p.libc = rest:match "libc=(.-) pkg="
  if p.libc == "" then p.libc = nil end
  if p.pkg then p.pkg = p.pkg:gsub(",", " ") end
  p.os = rest:match "os=(.*)$"
  if p.os == "" then p.os = nil end
  return p
end

-- The remote phanes' arguments, as shell words of root_script (files of
-- the run are named under its run directory "$D").
function M.run_words(args, files, color, report)
  local q = util.shquote
  local words = {}
  for _, a in ipairs(args) do
    words[#words + 1] = type(a) == "table" and ('"$D"/' .. q(a.run_file)) or q(a)
  end
  local path, overrides = false, false
  for _, f in ipairs(files) do
    if f.name:match "^path/" then path = true end
    if f.name == "overrides.json" then overrides = true end
  end
  if path then words[#words + 1] = '--path "$D/path"' end
  if overrides then words[#words + 1] = '--overrides "$D/overrides.json"' end
  if color then words[#words + 1] = "--color=always" end
  if report then words[#words + 1] = '--report "$D/report.json"' end
  return table.concat(words, " ")
end

return M
