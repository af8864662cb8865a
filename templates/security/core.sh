# Managed by phanes (module security, security.core_dumps): login shells
# start with core dumps off as well (limits.d and systemd-coredump cover
# the rest). A dump holds the process' memory: keys, passwords.
ulimit -c 0
