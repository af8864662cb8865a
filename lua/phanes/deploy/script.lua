-- deploy/script.lua: the shell that runs on the host. Root (sudo -n, sudo
-- with the password, or root's own login) only makes sure of the deploy
-- user and the site directory, then hands over to that user (runuser);
-- everything inside the site directory runs as the deploy user:
--
--   /srv/phanes/sites/            root:root 0755
--   /srv/phanes/sites/<site>/     phanes-deploy 0755
--     releases/<id>/              the release (files 0644/0755, phanes-deploy)
--     manifests/<id>              its sha256 manifest: written last, so a
--                                 release without one is a partial upload
--     current -> releases/<id>    switched by rename(2) of a temp symlink
--     .lock                       flock: one deploy of a site at a time
--
-- Arguments ($1 action, $2 site, $3 release id, $4 keep) are words checked
-- by deploy.tree (valid_site, valid_id) before they get here.
local M = {}

M.USER = "phanes-deploy"
M.BASE = "/srv/phanes/sites"

local function q(s) return require("phanes.remote.util").shquote(s) end

-- As root: the deploy user, /srv/phanes/sites, the site directory (made
-- only by a deploy; the others say NOSITE and exit 4 when it is absent).
local ROOT = [[
set -u
umask 022
U=%s; B=%s
fail() { echo "PHANES-ERR $*" >&2; exit 91; }
# only a deploy makes things: the others read, and a host without the
# deploy user or the site has no releases
if [ "$1" != deploy ] && { ! id -u "$U" >/dev/null 2>&1 || [ ! -d "$B/$2" ]; }; then echo "NOSITE"; exit 4; fi
id -u "$U" >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin "$U" >/dev/null || fail "cannot create the deploy user $U"
for d in /srv /srv/phanes "$B"; do
  [ -d "$d" ] || [ -L "$d" ] || mkdir -m 755 "$d" || fail "cannot make $d"
  case $(stat -c '%%u %%F %%A' "$d" 2>/dev/null) in "0 directory d"????-??-?) ;;
    *) fail "$d must be a directory owned by root that only root can write, not: $(stat -c '%%U %%F %%A' "$d" 2>&1)";; esac
done
S="$B/$2"
if [ ! -e "$S" ] && [ ! -L "$S" ]; then
  [ "$1" = deploy ] || { echo "NOSITE"; exit 4; }
  mkdir -m 755 "$S" && chown "$U:$U" "$S" || fail "cannot make $S"
fi
[ -d "$S" ] && [ ! -L "$S" ] && [ "$(stat -c %%U "$S")" = "$U" ] || fail "$S must be a directory owned by $U"
exec runuser -u "$U" -- sh -c %s sh "$@"
]]

-- As the deploy user, in the site directory.
local INNER = [[
set -u
umask 022
export LC_ALL=C
fail() { echo "PHANES-ERR $1" >&2; exit "${2:-92}"; }
cd "$B/$2" || fail "cannot enter $B/$2"
[ "$1" != deploy ] || mkdir -p releases manifests || fail "cannot make releases/ in $B/$2"
C=$(readlink current 2>/dev/null); C=${C#releases/}
complete() { ls releases | while read -r n; do [ -f "manifests/$n" ] && echo "$n"; done; }
SITE=$2
lock() { exec 9>.lock && flock -w 30 9 ||
  fail "another deploy of site $SITE holds its lock $B/$SITE/.lock (waited 30s): try again when it is done" 75; }
switch() { rm -f .current.tmp && ln -s "releases/$1" .current.tmp && mv -T .current.tmp current || fail "cannot switch current to $1"; }
case $1 in
state)
  echo "CURRENT $C"
  for n in $(complete); do echo "RELEASE $n"; done
  echo "MANIFEST"
  [ -n "$C" ] && [ -f "manifests/$C" ] && cat "manifests/$C"
  exit 0;;
deploy)
  lock
  ID=$3; R=releases/$ID
  for n in $(ls releases); do
    [ "$n" = "$C" ] || [ -f "manifests/$n" ] || { rm -rf "releases/$n" && echo "CLEANED $n"; }
  done
  for n in $(ls manifests); do [ -d "releases/$n" ] || rm -f "manifests/$n"; done
  [ -e "$R" ] && fail "release $ID exists already"
  mkdir "$R" || fail "cannot make $B/$2/$R"
  tar -x -f - -C "$R" || fail "the upload of release $ID was cut short (tar failed); the next deploy removes it"
  if [ -s "$R/.phanes-links" ]; then
    [ -n "$C" ] && [ -d "releases/$C" ] || fail "the current release is gone; deploy again"
    (cd "releases/$C" && xargs -0 cp -l --parents -t "../$ID" -- < "../$ID/.phanes-links") || fail "cannot link the unchanged files"
  fi
  rm -f "$R/.phanes-links"
  mv "$R/.phanes-manifest" "manifests/$ID" || fail "cannot record the manifest of $ID"
  switch "$ID"
  echo "DEPLOYED $ID"
  ;;
rollback)
  lock
  TO=${3:-}
  if [ -z "$TO" ]; then
    for n in $(complete); do [ -n "$C" ] && [ "$n" \< "$C" ] && TO=$n; done
    [ -n "$TO" ] || fail "no release older than the current one ($C) to roll back to" 4
  fi
  [ -d "releases/$TO" ] && [ -f "manifests/$TO" ] || fail "no complete release $TO (see: phanes deploy --list)" 4
  switch "$TO"
  echo "SWITCHED $C $TO"
  ;;
list)
  echo "CURRENT $C"
  for n in $(ls releases); do
    k=partial; [ -f "manifests/$n" ] && k=complete
    echo "REL $n $k $(du -sk "releases/$n" | cut -f1) $(stat -c %%Y "releases/$n") $(grep -c '^f' "manifests/$n" 2>/dev/null || echo 0)"
  done
  exit 0;;
esac
# the newest $4 complete releases stay, and the current one
[ "$1" = deploy ] || exit 0
K=$4; C=$(readlink current); C=${C#releases/}
N=$(complete | wc -l)
for n in $(complete); do
  [ "$N" -gt "$K" ] || break
  [ "$n" = "$C" ] && continue
  rm -rf "releases/$n" && rm -f "manifests/$n" && echo "PRUNED $n"
  N=$((N - 1))
done
]]

-- script.root(user, base) -> the root script (runs INNER as the deploy user)
function M.root()
  local inner = "B=" .. q(M.BASE) .. "\n" .. INNER:gsub("%%%%", "%%")
  return string.format(ROOT, q(M.USER), q(M.BASE), q(inner))
end

-- script.command(mode, action, site, id, keep) -> the exec channel's command
function M.command(mode, action, site, id, keep)
  local words = table.concat({ q(action), q(site), q(id or ""), q(tostring(keep or 0)) }, " ")
  local body = "sh -c " .. q(M.root()) .. " sh " .. words
  if mode == "root" then return "exec " .. body end
  if mode == "password" then return "exec sudo -k -S -p '' -- " .. body end
  return "exec sudo -n -- " .. body
end

return M
