# Managed by phanes (module security, security.idle_logout): an interactive
# shell left idle for 15 minutes ends, so a forgotten session on an
# unlocked screen does not stay open. Scripts and phanes' own runs do not
# read a TMOUT from here.
TMOUT=900
readonly TMOUT
export TMOUT
